using System.Diagnostics;
using System.Net.WebSockets;
using Microsoft.AspNetCore.Http;
using Sluice.Diagnostics;
using Sluice.Protocol;

namespace Sluice;

/// <summary>
/// A client connection proxied to a backend WebSocket. Two pumps run per connection, one each way; each
/// receives a message, runs its chain and hands the result to the other leg, then waits for that leg to take
/// it before receiving more. Nothing queues without bound: a slow reader on one side slows the other side's
/// sender.
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "The connection disposes its resources itself when it ends; its owner never does.")]
public sealed class ProxyConnection : WebSocketConnection
{
    private readonly WebSocketLeg _client;
    private readonly WebSocketLeg _backend;
    private readonly InboundSink _inboundSink;
    private readonly OutboundSink _outboundSink;
    private readonly CancellationTokenSource _abort = new();
    private readonly Lock _closeLock = new();

    private bool _closing;
    private bool _closeTimerArmed;
    private WebSocketCloseStatus? _clientStatus;
    private string? _clientReason;
    private ConnectionCloseInitiator _initiator;
    private long _lastClientPingTicks;
    private long _lastBackendPingTicks;

    internal ProxyConnection(WebSocketRoute route, HttpContext httpContext, WebSocketLeg client, WebSocketLeg backend, Uri backendUri, UpgradeContext upgrade, string? subProtocol)
        : base(route, httpContext, upgrade.Subject, subProtocol)
    {
        _client = client;
        _backend = backend;
        BackendUri = backendUri;
        UpgradeData = upgrade.Data;
        if (upgrade.ItemsOrNull is { } items)
        {
            foreach (var (key, value) in items)
            {
                Items[key] = value;
            }
        }

        _inboundSink = new InboundSink(this);
        _outboundSink = new OutboundSink(this);
    }

    /// <summary>Gets the backend URL this connection was proxied to.</summary>
    public Uri BackendUri { get; }

    /// <inheritdoc />
    public override bool IsClosing => Volatile.Read(ref _closing);

    internal override WebSocketLeg ClientLeg => _client;

    /// <summary>
    /// Sends a message to the client through the outbound interceptors, on the calling thread. It may run
    /// alongside messages from the backend; messages of one caller keep their order.
    /// </summary>
    public override async ValueTask SendAsync(WebSocketMessage message, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (IsClosing)
        {
            return;
        }

        var context = new MessageContext(this, MessageDirection.Outbound, _outboundSink);
        context.Reset(message, Stopwatch.GetTimestamp());
        MessageContextScope.EnterTransient(context);
        try
        {
            await Route.RunChainAsync(Route.Pipeline.Outbound, context);
        }
        finally
        {
            MessageContextScope.Exit();
        }

        await FlushQuietlyAsync(_client, cancellationToken);
    }

    internal override async ValueTask SendThroughOutboundAsync(WebSocketMessage message)
    {
        var context = new MessageContext(this, MessageDirection.Outbound, _outboundSink);
        context.Reset(message, Stopwatch.GetTimestamp());
        MessageContextScope.EnterTransient(context);
        try
        {
            await Route.RunChainAsync(Route.Pipeline.Outbound, context);
        }
        finally
        {
            MessageContextScope.Exit();
        }
    }

    /// <summary>
    /// Injects a message into the backend leg, after the inbound chain (no interceptor sees it). Safe from any
    /// thread; completes when the backend's socket has taken it. Discarded once the connection is closing.
    /// </summary>
    public ValueTask SendToBackendAsync(WebSocketMessage message, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (IsClosing || !_backend.Send(message.Type, message.Payload.Span))
        {
            return default;
        }

        return FlushQuietlyAsync(_backend, cancellationToken);
    }

    internal async Task RunAsync()
    {
        OnAccepted();
        Exception? fault = null;
        try
        {
            await Route.RunConnectedHooksAsync(this);
            // Reads wait with no token (an idle connection then holds no callback per pending read); a close that
            // times out aborts both legs once, which ends the reads.
            using var abortLegs = _abort.Token.UnsafeRegister(static state =>
            {
                var connection = (ProxyConnection)state!;
                connection._client.Abort();
                connection._backend.Abort();
            }, this);
            var faults = await Task.WhenAll(
                PumpAsync(_client, _backend, fromClient: true),
                PumpAsync(_backend, _client, fromClient: false));
            fault = faults[0] ?? faults[1];
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

    internal override void BeginClose(WebSocketCloseStatus status, string? reason, ConnectionCloseInitiator initiator)
    {
        lock (_closeLock)
        {
            if (_closing)
            {
                return;
            }

            _closing = true;
            _clientStatus = status;
            _clientReason = reason;
            _initiator = initiator;
        }

        SendCloseInBackground(_client, status, reason);
        SendCloseInBackground(_backend, status, reason);
        ArmCloseTimeout();
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

        if (options.KeepAliveInterval > TimeSpan.Zero)
        {
            KeepAlive(_client, fromClient: true, nowTicks, ref _lastClientPingTicks);
            KeepAlive(_backend, fromClient: false, nowTicks, ref _lastBackendPingTicks);
        }
    }

    private void KeepAlive(WebSocketLeg leg, bool fromClient, long nowTicks, ref long lastPingTicks)
    {
        if (leg.HandlesKeepAlive || IsClosing)
        {
            return;
        }

        var options = Route.Options;
        var silent = nowTicks - leg.LastReceiveTicks;
        if (silent > (long)options.EffectiveKeepAliveTimeout.TotalMilliseconds)
        {
            // A peer that answers nothing, not even pings, is gone: a half-open TCP connection.
            SluiceLog.KeepAliveTimeout(Route.Logger, Id, Route.Pattern, fromClient ? "client" : "backend");
            OnLegLost(fromClient);
            leg.Abort();
            return;
        }

        var interval = (long)options.KeepAliveInterval.TotalMilliseconds;
        if (silent >= interval && nowTicks - lastPingTicks >= interval)
        {
            lastPingTicks = nowTicks;
            if (leg.SendPing())
            {
                _ = FlushQuietlyAsync(leg, CancellationToken.None).AsTask();
            }
        }
    }

    private async Task<Exception?> PumpAsync(WebSocketLeg source, WebSocketLeg target, bool fromClient)
    {
        // Made on the first message: a connection that stays idle (most of a large fleet) never holds one.
        MessageContext? context = null;
        // Also on the first message: setting the async-local holder copies this flow's ExecutionContext.
        MessageContextScope.Holder? holder = null;
        var aborted = _abort.Token;
        ReceiveLoops.Started();
        try
        {
            while (true)
            {
                while (source.TryReceive(out var frame))
                {
                    if (frame.IsClose)
                    {
                        OnCloseReceived(fromClient, frame);
                        await source.FlushAsync(aborted);
                        return null;
                    }

                    if (IsClosing)
                    {
                        continue;
                    }

                    if (fromClient)
                    {
                        CountInbound(frame.Payload.Length);
                    }

                    context ??= fromClient
                        ? new MessageContext(this, MessageDirection.Inbound, _inboundSink)
                        : new MessageContext(this, MessageDirection.Outbound, _outboundSink);
                    context.Reset(WebSocketMessage.Borrow(frame.Type, frame.Payload), Stopwatch.GetTimestamp());
                    holder ??= MessageContextScope.Enter();
                    holder.Context = context;
                    var pipeline = Route.Pipeline;
                    var pending = Route.RunChainAsync(fromClient ? pipeline.Inbound : pipeline.Outbound, context);
                    if (!pending.IsCompletedSuccessfully)
                    {
                        await pending;
                    }

                    holder.Context = null;
                    context.Clear();
                }

                // End of a batch: one write to the other side, and one to this side for pongs and replies.
                if (target.HasPendingWrites)
                {
                    await FlushTargetAsync(target, targetIsClient: !fromClient, aborted);
                }

                if (source.HasPendingWrites)
                {
                    await source.FlushAsync(aborted);
                }

                if (!await source.ReceiveAsync(CancellationToken.None))
                {
                    OnLegLost(fromClient);
                    return null;
                }
            }
        }
        catch (WebSocketProtocolException ex)
        {
            SluiceLog.ProtocolViolation(Route.Logger, Id, Route.Pattern, fromClient ? "client" : "backend", ex.CloseStatus, ex.Message);
            BeginClose(ex.CloseStatus, ex.Message, ConnectionCloseInitiator.Server);
            try
            {
                await source.FlushAsync(aborted);
                await source.DrainAsync(aborted);
            }
            catch (Exception drain) when (drain is OperationCanceledException || HostedConnection.IsTransportFailure(drain))
            {
            }

            return ex;
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            source.Abort();
            return null;
        }
        catch (Exception ex) when (aborted.IsCancellationRequested && (HostedConnection.IsTransportFailure(ex) || ex is ObjectDisposedException))
        {
            // The close timed out and both legs were aborted: not a lost leg.
            return null;
        }
        catch (Exception ex) when (HostedConnection.IsTransportFailure(ex))
        {
            OnLegLost(fromClient);
            return null;
        }
        finally
        {
            if (holder is not null)
            {
                holder.Context = null;
            }

            ReceiveLoops.Stopped();
        }
    }

    private async ValueTask FlushTargetAsync(WebSocketLeg target, bool targetIsClient, CancellationToken aborted)
    {
        try
        {
            await target.FlushAsync(aborted);
        }
        catch (Exception ex) when (HostedConnection.IsTransportFailure(ex))
        {
            // The other side is gone; its own pump reports it too. This pump keeps reading its source until
            // the close handshake that OnLegLost starts completes.
            OnLegLost(fromClient: targetIsClient);
        }
    }

    private void OnCloseReceived(bool fromClient, LegFrame frame)
    {
        var source = fromClient ? _client : _backend;
        var other = fromClient ? _backend : _client;
        lock (_closeLock)
        {
            if (!_closing)
            {
                _closing = true;
                _initiator = fromClient ? ConnectionCloseInitiator.Client : ConnectionCloseInitiator.Backend;
                _clientStatus = frame.CloseStatus;
                _clientReason = frame.CloseReason;
            }
        }

        // Relay the close, code and reason, to the other side, and answer the side that sent it. Either may
        // have been sent already, when this close answers one of ours.
        SendCloseInBackground(other, frame.CloseStatus, frame.CloseReason);
        source.SendClose(frame.CloseStatus, frame.CloseReason);
        ArmCloseTimeout();
    }

    private void OnLegLost(bool fromClient)
    {
        lock (_closeLock)
        {
            if (!_closing)
            {
                _closing = true;
                if (fromClient)
                {
                    _initiator = ConnectionCloseInitiator.Client;
                    _clientStatus = null;
                }
                else
                {
                    _initiator = ConnectionCloseInitiator.Backend;
                    _clientStatus = WebSocketProtocol.BadGateway;
                    _clientReason = "backend connection lost";
                }
            }
        }

        if (fromClient)
        {
            SendCloseInBackground(_backend, WebSocketCloseStatus.EndpointUnavailable, "client went away");
        }
        else
        {
            SendCloseInBackground(_client, WebSocketProtocol.BadGateway, "backend connection lost");
        }

        ArmCloseTimeout();
    }

    private static void SendCloseInBackground(WebSocketLeg leg, WebSocketCloseStatus? status, string? reason)
    {
        if (leg.SendClose(status, reason))
        {
            _ = FlushQuietlyAsync(leg, CancellationToken.None).AsTask();
        }
    }

    private void ArmCloseTimeout()
    {
        lock (_closeLock)
        {
            if (_closeTimerArmed)
            {
                return;
            }

            _closeTimerArmed = true;
        }

        _abort.CancelAfter(Route.Options.CloseTimeout);
    }

    private async Task FinishAsync(Exception? fault)
    {
        await FlushWithTimeoutAsync(_client);
        await FlushWithTimeoutAsync(_backend);

        WebSocketCloseStatus? status;
        string? reason;
        ConnectionCloseInitiator initiator;
        lock (_closeLock)
        {
            _closing = true;
            status = _clientStatus;
            reason = _clientReason;
            initiator = _initiator;
        }

        if (_abort.IsCancellationRequested)
        {
            SluiceLog.CloseTimedOut(Route.Logger, Id, Route.Pattern, Route.Options.CloseTimeout);
        }

        _client.Dispose();
        _backend.Dispose();
        _abort.Dispose();
        await OnEndedAsync(fault, new ConnectionCloseInfo(status, reason, initiator));
    }

    private async ValueTask FlushWithTimeoutAsync(WebSocketLeg leg)
    {
        if (!leg.HasPendingWrites)
        {
            return;
        }

        try
        {
            await leg.FlushAsync().AsTask().WaitAsync(Route.Options.CloseTimeout);
        }
        catch (Exception ex) when (ex is TimeoutException || HostedConnection.IsTransportFailure(ex))
        {
            leg.Abort();
        }
    }

    private static async ValueTask FlushQuietlyAsync(WebSocketLeg leg, CancellationToken cancellationToken)
    {
        try
        {
            await leg.FlushAsync(cancellationToken);
        }
        catch (Exception ex) when (HostedConnection.IsTransportFailure(ex))
        {
            // The leg's pump sees the failure and ends the connection; a sender has nothing to add.
        }
    }

    /// <summary>Client to backend: forward to the backend, reply to the client.</summary>
    private sealed class InboundSink(ProxyConnection connection) : MessageSink
    {
        public override ValueTask ForwardAsync(MessageContext context)
        {
            var message = context.Message;
            connection._backend.Send(message.Type, message.Payload.Span);
            return default;
        }

        public override void Reply(MessageContext context, WebSocketMessage message)
        {
            if (connection._client.Send(message.Type, message.Payload.Span))
            {
                connection.CountOutbound(message.Length);
            }
        }
    }

    /// <summary>Backend to client: forward to the client, reply to the backend.</summary>
    private sealed class OutboundSink(ProxyConnection connection) : MessageSink
    {
        public override ValueTask ForwardAsync(MessageContext context)
        {
            var message = context.Message;
            if (connection._client.Send(message.Type, message.Payload.Span))
            {
                connection.CountOutbound(message.Length);
            }

            return default;
        }

        public override void Reply(MessageContext context, WebSocketMessage message) =>
            connection._backend.Send(message.Type, message.Payload.Span);
    }
}
