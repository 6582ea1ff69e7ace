using System.Diagnostics;
using System.Net.WebSockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http;
using Sluice.Diagnostics;
using Sluice.Protocol;

namespace Sluice;

/// <summary>
/// A connection terminated by the app (host mode): one receive loop runs each client message through the
/// inbound chain into the endpoint's handler; replies and app sends run through the outbound chain, one at a
/// time, and share the client leg's writer.
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "The connection disposes its resources itself when it ends; its owner never does.")]
internal sealed class HostedConnection : WebSocketConnection
{
    private readonly HostedEndpoint _endpoint;
    private readonly HttpContext _httpContext;
    private readonly WebSocketLeg _leg;
    private readonly MessageContext _inbound;
    private readonly MessageContext _outbound;
    private readonly SemaphoreSlim _sendGate = new(1, 1);
    private readonly CancellationTokenSource _abort = new();
    private readonly Lock _closeLock = new();

    private SemaphoreSlim? _sendSlots;
    private bool _closing;
    private WebSocketCloseStatus? _closeStatus;
    private string? _closeReason;
    private ConnectionCloseInitiator _initiator = ConnectionCloseInitiator.Client;
    private long _lastPingTicks;

    public HostedConnection(HostedEndpoint endpoint, WebSocketRoute route, HttpContext httpContext, WebSocketLeg leg, UpgradeContext upgrade, string? subProtocol)
        : base(route, httpContext, upgrade.Subject, subProtocol)
    {
        _endpoint = endpoint;
        _httpContext = httpContext;
        _leg = leg;
        UpgradeData = upgrade.Data;
        if (upgrade.ItemsOrNull is { } items)
        {
            foreach (var (key, value) in items)
            {
                Items[key] = value;
            }
        }

        _inbound = new MessageContext(this, MessageDirection.Inbound, new InboundSink(this));
        _outbound = new MessageContext(this, MessageDirection.Outbound, new OutboundSink(this));
    }

    public override bool IsClosing => Volatile.Read(ref _closing);

    internal override WebSocketLeg ClientLeg => _leg;

    public async Task RunAsync()
    {
        OnAccepted();
        Exception? fault = null;
        try
        {
            await Route.RunConnectedHooksAsync(this);
            fault = await ReceiveLoopAsync();
        }
        catch (Exception ex)
        {
            fault = ex;
        }
        finally
        {
            await FinishAsync(fault);
        }
    }

    public override ValueTask SendAsync(WebSocketMessage message, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (IsClosing)
        {
            return default;
        }

        // An outbound interceptor of this connection sending another message: it already holds the gate.
        if (MessageContextScope.Current is { Direction: MessageDirection.Outbound } current && ReferenceEquals(current.Connection, this))
        {
            return RunNestedOutboundAsync(message, current);
        }

        var slots = _sendSlots ?? InitializeSlots();
        if (!slots.Wait(0, CancellationToken.None))
        {
            switch (Route.Options.SendQueueFullMode)
            {
                case SendQueueFullMode.DropNewest:
                    SluiceLog.SendQueueFull(Route.Logger, Id, Route.Pattern, Route.Options.SendQueueCapacity, "dropping the message");
                    Route.Metrics.SendQueueDropped.Add(1, new KeyValuePair<string, object?>("route", Route.Pattern));
                    return default;
                case SendQueueFullMode.Close:
                    SluiceLog.SendQueueFull(Route.Logger, Id, Route.Pattern, Route.Options.SendQueueCapacity, "closing with 1008");
                    BeginClose(WebSocketCloseStatus.PolicyViolation, "send queue full", ConnectionCloseInitiator.Server);
                    return default;
            }

            return SendQueuedAsync(message, slots, waitForSlot: true, cancellationToken);
        }

        return SendQueuedAsync(message, slots, waitForSlot: false, cancellationToken);
    }

    internal override void BeginClose(WebSocketCloseStatus status, string? reason, ConnectionCloseInitiator initiator)
    {
        lock (_closeLock)
        {
            if (_closing)
            {
                return;
            }

            _closing = true;
            _closeStatus = status;
            _closeReason = reason;
            _initiator = initiator;
        }

        _leg.SendClose(status, reason);
        _abort.CancelAfter(Route.Options.CloseTimeout);
        FlushInBackground();
    }

    internal override void OnTick(long nowTicks)
    {
        if (IsClosing)
        {
            return;
        }

        var options = Route.Options;
        if (options.IdleTimeout != Timeout.InfiniteTimeSpan && nowTicks - LastMessageTicks > (long)options.IdleTimeout.TotalMilliseconds)
        {
            SluiceLog.IdleTimeout(Route.Logger, Id, Route.Pattern, options.IdleTimeout);
            BeginClose(WebSocketCloseStatus.EndpointUnavailable, "idle timeout", ConnectionCloseInitiator.Server);
            return;
        }

        if (options.KeepAliveInterval <= TimeSpan.Zero || _leg.HandlesKeepAlive)
        {
            return;
        }

        var silent = nowTicks - _leg.LastReceiveTicks;
        if (silent > (long)options.EffectiveKeepAliveTimeout.TotalMilliseconds)
        {
            SluiceLog.KeepAliveTimeout(Route.Logger, Id, Route.Pattern, "client");
            _abort.Cancel();
            return;
        }

        var interval = (long)options.KeepAliveInterval.TotalMilliseconds;
        if (silent >= interval && nowTicks - _lastPingTicks >= interval)
        {
            _lastPingTicks = nowTicks;
            if (_leg.SendPing())
            {
                FlushInBackground();
            }
        }
    }

    private async Task<Exception?> ReceiveLoopAsync()
    {
        var holder = MessageContextScope.Enter();
        var aborted = _abort.Token;
        ReceiveLoops.Started();
        try
        {
            while (true)
            {
                while (_leg.TryReceive(out var frame))
                {
                    if (frame.IsClose)
                    {
                        OnCloseReceived(frame);
                        return null;
                    }

                    if (IsClosing)
                    {
                        // The close handshake has begun: RFC 6455 lets us discard data until the peer's close.
                        continue;
                    }

                    CountInbound(frame.Payload.Length);
                    var context = _inbound;
                    context.Reset(WebSocketMessage.Borrow(frame.Type, frame.Payload), Stopwatch.GetTimestamp());
                    holder.Context = context;
                    var pending = Route.RunChainAsync(Route.Pipeline.Inbound, context);
                    if (!pending.IsCompletedSuccessfully)
                    {
                        await pending;
                    }

                    holder.Context = null;
                    context.Clear();
                }

                // The end of a batch: everything this loop produced (replies, pongs) goes out in one write.
                if (_leg.HasPendingWrites)
                {
                    await _leg.FlushAsync(aborted);
                }

                if (!await _leg.ReceiveAsync(aborted))
                {
                    return null;
                }
            }
        }
        catch (WebSocketProtocolException ex)
        {
            SluiceLog.ProtocolViolation(Route.Logger, Id, Route.Pattern, "client", ex.CloseStatus, ex.Message);
            BeginClose(ex.CloseStatus, ex.Message, ConnectionCloseInitiator.Server);
            await DrainAfterFailureAsync(aborted);
            return ex;
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            if (IsClosing)
            {
                SluiceLog.CloseTimedOut(Route.Logger, Id, Route.Pattern, Route.Options.CloseTimeout);
            }

            _leg.Abort();
            return null;
        }
        catch (Exception ex) when (IsTransportFailure(ex))
        {
            return null;
        }
        finally
        {
            holder.Context = null;
            ReceiveLoops.Stopped();
        }
    }

    private void OnCloseReceived(LegFrame frame)
    {
        lock (_closeLock)
        {
            if (_closing)
            {
                // The peer's answer to our close: the handshake is complete.
                return;
            }

            _closing = true;
            _closeStatus = frame.CloseStatus;
            _closeReason = frame.CloseReason;
            _initiator = ConnectionCloseInitiator.Client;
        }

        // Echo the code, as RFC 6455 5.5.1 recommends; FinishAsync flushes it.
        _leg.SendClose(frame.CloseStatus, frame.CloseReason);
    }

    private async Task DrainAfterFailureAsync(CancellationToken aborted)
    {
        try
        {
            await _leg.FlushAsync(aborted);
            await _leg.DrainAsync(aborted);
        }
        catch (Exception ex) when (ex is OperationCanceledException || IsTransportFailure(ex))
        {
        }
    }

    private async Task FinishAsync(Exception? fault)
    {
        try
        {
            if (_leg.HasPendingWrites)
            {
                await _leg.FlushAsync().AsTask().WaitAsync(Route.Options.CloseTimeout);
            }
        }
        catch (Exception ex) when (ex is TimeoutException || IsTransportFailure(ex))
        {
            _leg.Abort();
        }

        WebSocketCloseStatus? status;
        string? reason;
        ConnectionCloseInitiator initiator;
        lock (_closeLock)
        {
            if (!_closing)
            {
                // The client went away without a close frame.
                _closing = true;
                _initiator = ConnectionCloseInitiator.Client;
            }

            status = _closeStatus;
            reason = _closeReason;
            initiator = _initiator;
        }

        _leg.Dispose();
        _abort.Dispose();
        _sendGate.Dispose();
        _sendSlots?.Dispose();
        await OnEndedAsync(fault, new ConnectionCloseInfo(status, reason, initiator));
    }

    private SemaphoreSlim InitializeSlots()
    {
        var slots = new SemaphoreSlim(Route.Options.SendQueueCapacity, Route.Options.SendQueueCapacity);
        var existing = Interlocked.CompareExchange(ref _sendSlots, slots, null);
        if (existing is not null)
        {
            slots.Dispose();
            return existing;
        }

        return slots;
    }

    private async ValueTask SendQueuedAsync(WebSocketMessage message, SemaphoreSlim slots, bool waitForSlot, CancellationToken cancellationToken)
    {
        Route.Metrics.SendQueueDepth.Add(1);
        try
        {
            if (waitForSlot)
            {
                await slots.WaitAsync(cancellationToken);
            }

            try
            {
                await _sendGate.WaitAsync(cancellationToken);
                try
                {
                    var context = _outbound;
                    context.Reset(message, Stopwatch.GetTimestamp());
                    MessageContextScope.EnterTransient(context);
                    await Route.RunChainAsync(Route.Pipeline.Outbound, context);
                    context.Clear();
                }
                finally
                {
                    MessageContextScope.Exit();
                    _sendGate.Release();
                }

                await _leg.FlushAsync(cancellationToken);
            }
            finally
            {
                slots.Release();
            }
        }
        catch (Exception ex) when (IsTransportFailure(ex) || ex is ObjectDisposedException)
        {
            // The connection went away while sending; like a send to a closed connection, the message is discarded.
        }
        finally
        {
            Route.Metrics.SendQueueDepth.Add(-1);
        }
    }

    internal override async ValueTask SendThroughOutboundAsync(WebSocketMessage message)
    {
        await _sendGate.WaitAsync();
        try
        {
            var context = _outbound;
            context.Reset(message, Stopwatch.GetTimestamp());
            MessageContextScope.EnterTransient(context);
            await Route.RunChainAsync(Route.Pipeline.Outbound, context);
            context.Clear();
        }
        finally
        {
            MessageContextScope.Exit();
            _sendGate.Release();
        }
    }

    private async ValueTask RunNestedOutboundAsync(WebSocketMessage message, MessageContext current)
    {
        var context = new MessageContext(this, MessageDirection.Outbound, _outbound.Sink);
        context.Reset(message, Stopwatch.GetTimestamp(), current.Cause);
        var holder = MessageContextScope.CurrentHolder!;
        holder.Context = context;
        try
        {
            await Route.RunChainAsync(Route.Pipeline.Outbound, context);
        }
        finally
        {
            holder.Context = current;
        }
    }

    /// <summary>A message the handler returned: through the outbound chain, flushed at the end of the batch.</summary>
    private async ValueTask SendReplyAsync(WebSocketMessage message, MessageContext cause)
    {
        await _sendGate.WaitAsync();
        var holder = MessageContextScope.CurrentHolder;
        try
        {
            var context = _outbound;
            context.Reset(message, Stopwatch.GetTimestamp(), cause);
            if (holder is not null)
            {
                holder.Context = context;
            }

            await Route.RunChainAsync(Route.Pipeline.Outbound, context);
            context.Clear();
        }
        finally
        {
            if (holder is not null)
            {
                holder.Context = cause;
            }

            _sendGate.Release();
        }
    }

    private ValueTask InvokeHandlerAsync(MessageContext context)
    {
        var handler = _endpoint.Handler;
        if (handler is null)
        {
            return default;
        }

        context.Layer = HostedEndpoint.HandlerLayer;
        var pending = handler(context);
        if (!pending.IsCompletedSuccessfully)
        {
            return AwaitHandlerAsync(pending, context);
        }

        var result = pending.Result;
        return result is null || IsClosing ? default : SendReplyAsync(_endpoint.Results.Convert(result), context);
    }

    private async ValueTask AwaitHandlerAsync(ValueTask<object?> pending, MessageContext context)
    {
        var result = await pending;
        if (result is not null && !IsClosing)
        {
            await SendReplyAsync(_endpoint.Results.Convert(result), context);
        }
    }

    private void FlushInBackground()
    {
        var pending = _leg.FlushAsync();
        if (!pending.IsCompletedSuccessfully)
        {
            _ = ObserveAsync(pending);
        }

        static async Task ObserveAsync(ValueTask pending)
        {
            try
            {
                await pending;
            }
            catch (Exception)
            {
                // A failed write surfaces in the receive loop as a transport failure.
            }
        }
    }

    internal static bool IsTransportFailure(Exception exception) =>
        exception is IOException or ConnectionResetException or ConnectionAbortedException or ObjectDisposedException or WebSocketException
            or System.Net.Sockets.SocketException;

    private sealed class InboundSink(HostedConnection connection) : MessageSink
    {
        public override ValueTask ForwardAsync(MessageContext context) => connection.InvokeHandlerAsync(context);

        public override void Reply(MessageContext context, WebSocketMessage message)
        {
            // Straight to the client, after the outbound chain; the receive loop flushes at the end of its batch.
            if (connection._leg.Send(message.Type, message.Payload.Span))
            {
                connection.CountOutbound(message.Length);
            }
        }
    }

    private sealed class OutboundSink(HostedConnection connection) : MessageSink
    {
        public override ValueTask ForwardAsync(MessageContext context)
        {
            var message = context.Message;
            if (connection._leg.Send(message.Type, message.Payload.Span))
            {
                connection.CountOutbound(message.Length);
            }

            return default;
        }

        public override void Reply(MessageContext context, WebSocketMessage message)
        {
            // Outbound messages in host mode come from the app itself; there is no peer to answer.
        }
    }
}
