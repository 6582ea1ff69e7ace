using System.Diagnostics;
using System.Net.WebSockets;
using Microsoft.AspNetCore.Connections;
using Sluice.Diagnostics;
using Sluice.Protocol;

namespace Sluice;

/// <summary>
/// Where a connection is in its life. The close handshake follows RFC 6455 as System.Net.WebSockets'
/// ManagedWebSocket tracks it: <see cref="Open"/> → <see cref="CloseSent"/> or <see cref="CloseReceived"/> →
/// <see cref="Closed"/> or <see cref="Aborted"/>. A leg lost without a close frame counts as a close Sluice starts
/// (<see cref="CloseSent"/>, 1014 or 1001 to the other leg); only when every pump ends while still
/// <see cref="Open"/> (the client's socket gone in host mode) does it go straight to <see cref="Closed"/>.
/// Nothing goes back.
/// </summary>
internal enum ConnectionState
{
    /// <summary>Messages flow.</summary>
    Open,

    /// <summary>
    /// Sluice started the close (the app, a policy, a limit, the idle timeout, shutdown, a protocol violation, a
    /// lost leg): close frames are queued on every leg still there; data that still arrives is discarded.
    /// </summary>
    CloseSent,

    /// <summary>A peer's close frame came first: it is answered on its leg and relayed to the other one.</summary>
    CloseReceived,

    /// <summary>Every pump has ended and the legs are disposed.</summary>
    Closed,

    /// <summary>The close handshake did not complete within the close timeout: the legs were torn down.</summary>
    Aborted,
}

/// <summary>
/// The connection engine, shared by both modes: the state and close handshake, the keep-alive and idle tick,
/// the receive → chain → sink pump, the outbound gate, and the end. Host mode runs one pump (client leg into
/// the inbound chain, whose sink is the handler); proxy mode runs two, each into the other leg.
/// </summary>
public abstract partial class WebSocketConnection
{
    private readonly WebSocketLeg _client;
    private readonly WebSocketLeg? _backend;
    private readonly LegSink _outboundSink;
    private readonly CancellationTokenSource _abort = new();
    private readonly Lock _stateLock = new();

    // Serialises every run of the outbound chain of this connection: app sends, topic deliveries, handler
    // replies (host mode) and messages from the backend (proxy mode). Outbound interceptors therefore never run
    // concurrently for one connection, in either mode.
    private readonly SemaphoreSlim _sendGate = new(1, 1);

    // Written and read by the backend pump only: it holds _sendGate from the first fragment of a streamed message to the last.
    private bool _streamHoldsOutboundGate;

    // The size from which a message's chains leave a socket's I/O thread for the thread pool (see PumpAsync).
    private const int InlineWorkLimit = 64 * 1024;

    private MessageSink _inboundSink;
    private volatile ConnectionState _state;
    private WebSocketCloseStatus? _closeStatus;
    private string? _closeReason;
    private ConnectionCloseInitiator _initiator;
    private ITimer? _closeTimer;
    private bool _finishing;
    private SemaphoreSlim? _sendSlots;
    private MessageContext? _outbound;
    private long _lastClientPingTicks;
    private long _lastBackendPingTicks;

    /// <summary>The leg to the client, where topic frames are written.</summary>
    internal WebSocketLeg ClientLeg => _client;

    /// <summary>The backend's leg in proxy mode; null in host mode.</summary>
    private protected WebSocketLeg? BackendLeg => _backend;

    /// <summary>Where the inbound chain ends: the handler (host mode) or the backend's leg (proxy mode).</summary>
    private protected MessageSink InboundSink
    {
        get => _inboundSink;
        init => _inboundSink = value;
    }

    internal ConnectionState State => _state;

    /// <summary>
    /// Runs the connection until every pump has ended, then ends it; with an <see cref="UpgradeHandoff"/>, returns once
    /// the connection runs on its own and hands the rest to the connection middleware.
    /// </summary>
    internal Task RunAsync()
    {
        // From here on the connection gives back what the upgrade took (its place, what its steps registered) when it
        // ends; until here, the endpoint does, so that nothing is lost if the connection is never run.
        var upgrade = _upgrade!;
        _upgrade = null;
        upgrade.ConnectionOwnsPlace = true;
        _disposables = upgrade.TakeDisposables();
        return _handoff is { } handoff ? handoff.AdoptAsync(RunCoreAsync()) : RunCoreAsync();
    }

    private async Task RunCoreAsync()
    {
        OnAccepted();
        Exception? fault = null;
        try
        {
            await Route.RunConnectedHooksAsync(this);
            if (_handoff is { } handoff)
            {
                // Nothing reads the request from here on: it may end, and Kestrel free its objects.
                _handoff = null;
                handoff.Release();
            }

            // Reads wait with no token (an idle connection then holds no callback per pending read); a close that
            // times out aborts every leg once, which ends the reads (OnCloseTimedOut).
            if (_backend is null)
            {
                fault = await PumpAsync(_client, target: null, fromClient: true);
            }
            else
            {
                // Awaited one after the other rather than through Task.WhenAll, whose promise and array each idle
                // connection would hold. A pump returns its fault; should one throw all the same, the other is still
                // awaited, so that the legs are only disposed once neither pump reads them.
                var backendPump = PumpAsync(_backend, _client, fromClient: false);
                Exception? clientFault;
                try
                {
                    clientFault = await PumpAsync(_client, _backend, fromClient: true);
                }
                catch (Exception ex)
                {
                    clientFault = ex;
                }

                Exception? backendFault;
                try
                {
                    backendFault = await backendPump;
                }
                catch (Exception ex)
                {
                    backendFault = ex;
                }

                fault = clientFault ?? backendFault;
            }
        }
        catch (Exception ex)
        {
            fault = ex;
        }
        finally
        {
            try
            {
                await FinishAsync(fault);
            }
            finally
            {
                // What the connection holds for others (a limit's place, a pool's count) is given back whatever failed.
                Activity?.Dispose();
                DisposeRegistered();
                OnEnded();
            }
        }
    }

    private void DisposeRegistered()
    {
        if (Interlocked.Exchange(ref _disposables, null) is not { } disposables)
        {
            return;
        }

        foreach (var disposable in disposables)
        {
            try
            {
                disposable.Dispose();
            }
            catch (Exception ex)
            {
                SluiceLog.HookFailed(Route.Logger, ex, "RegisterForDispose", Id, Route.Pattern);
            }
        }
    }

    /// <summary>After the connection has ended and given its place back: what the mode counted for it ends too.</summary>
    private protected virtual void OnEnded()
    {
    }

    /// <summary>
    /// Sends a message to the client through the endpoint's outbound interceptors. Safe to call from any
    /// thread: the outbound chain runs for one message at a time per connection, whoever sends it (the app, a
    /// topic, a handler's reply, or in proxy mode the backend). Completes when the message has been handed to
    /// the socket, or dropped by an interceptor; a message sent to a closing connection is discarded.
    /// </summary>
    /// <remarks>
    /// The connection's send queue holds <see cref="WebSocketEndpointOptions.SendQueueCapacity"/> messages; when
    /// it is full, <see cref="WebSocketEndpointOptions.SendQueueFullMode"/> says whether this call waits, drops the
    /// message or closes the connection with 1008.
    /// </remarks>
    /// <exception cref="ArgumentException">The message is a control frame: the outbound chain carries data messages.</exception>
    public ValueTask SendAsync(WebSocketMessage message, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (message.IsControl)
        {
            // The outbound chain's interceptors see data messages only.
            throw new ArgumentException("SendAsync sends data messages; send a ping or pong with SendToClientAsync, close with CloseAsync.", nameof(message));
        }

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

    /// <summary>Runs the outbound chain for a message a topic delivers; the caller flushes.</summary>
    internal ValueTask SendThroughOutboundAsync(WebSocketMessage message) => RunOutboundAsync(message, cause: null, CancellationToken.None);

    /// <summary>
    /// Runs the outbound chain under the connection's outbound gate. <paramref name="cause"/> is the inbound
    /// message whose handler produced <paramref name="message"/> (host mode), run on the inbound pump's flow.
    /// </summary>
    private protected async ValueTask RunOutboundAsync(WebSocketMessage message, MessageContext? cause, CancellationToken cancellationToken)
    {
        if (!_sendGate.Wait(0, CancellationToken.None))
        {
            await WaitForGateAsync(cancellationToken);
        }

        if (IsClosing)
        {
            // The close began while this message waited: it would be discarded, so no interceptor sees it.
            _sendGate.Release();
            return;
        }

        var holder = cause is null ? null : MessageContextScope.CurrentHolder;
        try
        {
            var context = _outbound ??= new MessageContext(this, MessageDirection.Outbound, _outboundSink);
            context.Reset(message, Stopwatch.GetTimestamp(), cause);
            if (cause is null)
            {
                MessageContextScope.EnterTransient(context);
            }
            else if (holder is not null)
            {
                holder.Context = context;
            }

            await Route.RunChainAsync(Route.Pipeline.Outbound, context);
            context.Clear();
        }
        finally
        {
            if (cause is null)
            {
                MessageContextScope.Exit();
            }
            else if (holder is not null)
            {
                holder.Context = cause;
            }

            _sendGate.Release();
        }
    }

    /// <summary>
    /// Waits for the outbound gate when it is taken. The wait ends, too, when the connection is aborted (the close
    /// timer), so that a chain stuck while holding the gate cannot keep the connection, or its place, forever.
    /// </summary>
    private async ValueTask WaitForGateAsync(CancellationToken cancellationToken)
    {
        if (!cancellationToken.CanBeCanceled)
        {
            await _sendGate.WaitAsync(_abort.Token);
            return;
        }

        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _abort.Token);
        await _sendGate.WaitAsync(linked.Token);
    }

    /// <summary>Starts closing the connection; safe to call many times and from any thread.</summary>
    internal void BeginClose(WebSocketCloseStatus status, string? reason, ConnectionCloseInitiator initiator)
    {
        if (!TryStartClosing(ConnectionState.CloseSent, status, reason, initiator))
        {
            return;
        }

        SendCloseInBackground(_client, status, reason);
        if (_backend is not null)
        {
            SendCloseInBackground(_backend, status, reason);
        }

        ArmCloseTimeout();
    }

    /// <summary>Called once a second by <see cref="ConnectionMonitor"/>: keep-alive and idle timeout.</summary>
    internal void OnTick(long now)
    {
        if (IsClosing)
        {
            return;
        }

        var options = Route.Options;
        if (options.IdleTimeout != Timeout.InfiniteTimeSpan && Route.Time.GetElapsedTime(LastMessageTicks, now) > options.IdleTimeout)
        {
            SluiceLog.IdleTimeout(Route.Logger, Id, Route.Pattern, options.IdleTimeout);
            BeginClose(WebSocketCloseStatus.EndpointUnavailable, "idle timeout", ConnectionCloseInitiator.Server);
            return;
        }

        if (options.KeepAliveInterval > TimeSpan.Zero)
        {
            KeepAlive(_client, fromClient: true, now, ref _lastClientPingTicks);
            if (_backend is not null)
            {
                KeepAlive(_backend, fromClient: false, now, ref _lastBackendPingTicks);
            }
        }
    }

    internal static bool IsTransportFailure(Exception exception) =>
        exception is IOException or ConnectionResetException or ConnectionAbortedException or ObjectDisposedException or WebSocketException
            or System.Net.Sockets.SocketException;

    /// <summary>Queues a message on a leg; a message to the client counts as sent to it.</summary>
    private protected void Write(WebSocketLeg leg, WebSocketMessage message)
    {
        if (message.Type == MessageType.Close)
        {
            // Written as a message it would bypass the close handshake.
            throw new InvalidOperationException("A close frame is not sent as a message: call MessageContext.Close or WebSocketConnection.CloseAsync.");
        }

        if (leg.Send(message.Type, message.Payload.Span) && ReferenceEquals(leg, _client))
        {
            CountOutbound(message.Length);
        }
    }

    private protected static async ValueTask FlushQuietlyAsync(WebSocketLeg leg, CancellationToken cancellationToken)
    {
        try
        {
            await leg.FlushAsync(cancellationToken);
        }
        catch (Exception ex) when (IsTransportFailure(ex))
        {
            // The leg's pump sees the failure and ends the connection; a sender has nothing to add.
        }
    }

    private void KeepAlive(WebSocketLeg leg, bool fromClient, long now, ref long lastPingTicks)
    {
        if (leg.HandlesKeepAlive || IsClosing)
        {
            return;
        }

        var options = Route.Options;
        var silent = Route.Time.GetElapsedTime(leg.LastReceiveTicks, now);
        if (silent > options.EffectiveKeepAliveTimeout)
        {
            // A peer that answers nothing, not even pings, is gone: a half-open TCP connection.
            SluiceLog.KeepAliveTimeout(Route.Logger, Id, Route.Pattern, fromClient ? "client" : "backend");
            OnLegLost(fromClient);
            leg.Abort();
            return;
        }

        if (silent >= options.KeepAliveInterval && (lastPingTicks == 0 || Route.Time.GetElapsedTime(lastPingTicks, now) >= options.KeepAliveInterval))
        {
            lastPingTicks = now;
            if (leg.SendPing())
            {
                _ = FlushQuietlyAsync(leg, CancellationToken.None).AsTask();
            }
        }
    }

    /// <summary>
    /// Receives from <paramref name="source"/>, runs each message through its direction's chain into its sink
    /// and flushes at the end of each batch; <paramref name="target"/> is the leg the sink writes to, when it is
    /// not the source (proxy mode).
    /// </summary>
    private async Task<Exception?> PumpAsync(WebSocketLeg source, WebSocketLeg? target, bool fromClient)
    {
        // Made on the first message: a connection that stays idle (most of a large fleet) never holds one.
        MessageContext? context = null;
        // Also on the first message: setting the async-local holder copies this flow's ExecutionContext.
        MessageContextScope.Holder? holder = null;
        // On the first fragment of a streamed message.
        FragmentRelay? relay = null;
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
                        await OnCloseFrameAsync(source, frame, fromClient, !IsClosing && ControlChain(fromClient) is not null ? holder ??= MessageContextScope.Enter() : null, aborted);
                        return null;
                    }

                    if (frame.IsPingOrPong)
                    {
                        if (!IsClosing && ControlChain(fromClient) is { } controlChain)
                        {
                            await OnPingOrPongAsync(controlChain, source, frame, fromClient, holder ??= MessageContextScope.Enter());
                        }
                        else if (frame.Type == MessageType.Ping)
                        {
                            // RFC 6455 5.5.2: answer with the same payload. The pump flushes at the end of its batch.
                            source.SendPong(frame.Payload.Span);
                        }

                        continue;
                    }

                    if (IsClosing)
                    {
                        // The close handshake has begun: RFC 6455 lets us discard data until the peer's close.
                        ReleaseStreamGate(relay);
                        continue;
                    }

                    holder ??= MessageContextScope.Enter();
                    if (frame.IsFragment)
                    {
                        // A piece of a large message streamed as it arrives (ConnectionEngine.Streaming.cs).
                        relay ??= new FragmentRelay();
                        await RelayFragmentAsync(relay, frame, fromClient ? context ??= new MessageContext(this, MessageDirection.Inbound, _inboundSink) : null, holder);
                        continue;
                    }

                    var length = frame.Payload.Length;
                    if (length >= InlineWorkLimit && !Thread.CurrentThread.IsThreadPoolThread)
                    {
                        // Off the thread pool this is a socket's I/O thread (a server that runs continuations inline,
                        // as the gateway does). A large message's chain (parse, validate, rewrite) would stall every
                        // connection that thread serves: it runs on the thread pool instead.
                        await YieldToThreadPoolAsync().ConfigureAwait(false);
                    }

                    if (fromClient)
                    {
                        CountInbound(length);
                        context ??= new MessageContext(this, MessageDirection.Inbound, _inboundSink);
                        context.ResetReceived(frame.Type, frame.Payload, Stopwatch.GetTimestamp());
                        holder.Context = context;
                        var pending = Route.RunChainAsync(Route.Pipeline.Inbound, context);
                        if (!pending.IsCompletedSuccessfully)
                        {
                            await pending;
                        }

                        holder.Context = null;
                        context.Clear();
                    }
                    else
                    {
                        // From the backend: the outbound chain, under the same gate as the app's sends.
                        if (!_sendGate.Wait(0, CancellationToken.None))
                        {
                            // Awaited as a ValueTask, as the pump's other waits are: one awaiter field serves them all.
                            await new ValueTask(_sendGate.WaitAsync(aborted));
                        }

                        try
                        {
                            _outbound ??= new MessageContext(this, MessageDirection.Outbound, _outboundSink);
                            _outbound.ResetReceived(frame.Type, frame.Payload, Stopwatch.GetTimestamp());
                            holder.Context = _outbound;
                            var pending = Route.RunChainAsync(Route.Pipeline.Outbound, _outbound);
                            if (!pending.IsCompletedSuccessfully)
                            {
                                await pending;
                            }

                            holder.Context = null;
                            _outbound.Clear();
                        }
                        finally
                        {
                            _sendGate.Release();
                        }
                    }
                }

                // End of a batch: one write to the other side, and one to this side for pongs and replies.
                if (target is not null && target.HasPendingWrites)
                {
                    await FlushTargetAsync(target, aborted);
                }

                if (source.HasPendingWrites)
                {
                    await source.FlushAsync(aborted);
                }

                // An idle connection waits here, on the transport's own zero-byte read; what the receive then
                // reads has arrived.
                await source.WaitForDataAsync();
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
                // Stops at the peer's close frame when the frame boundaries are intact, so the connection ends at once.
                await source.FlushAsync(aborted);
                await new ValueTask(source.DrainAsync(aborted));
            }
            catch (Exception drain) when (drain is OperationCanceledException || IsTransportFailure(drain))
            {
            }

            return ex;
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            source.Abort();
            return null;
        }
        catch (Exception ex) when (aborted.IsCancellationRequested && IsTransportFailure(ex))
        {
            // The close timed out and every leg was aborted: not a lost leg.
            return null;
        }
        catch (Exception ex) when (IsTransportFailure(ex))
        {
            OnLegLost(fromClient);
            return null;
        }
        catch (Exception ex)
        {
            // Anything else ends this pump: close both legs, so that the other pump ends too (at the latest when the
            // close timer aborts them) instead of running on beside a dead one; the fault is logged as the connection ends.
            BeginClose(WebSocketCloseStatus.InternalServerError, "internal error", ConnectionCloseInitiator.Server);
            return ex;
        }
        finally
        {
            if (holder is not null)
            {
                holder.Context = null;
            }

            ReleaseStreamGate(relay);
            ReceiveLoops.Stopped();
        }
    }

    // The pump's rare steps are methods of their own, so that their state does not grow the pump's: every idle
    // connection holds one suspended pump per leg.
    private async ValueTask OnCloseFrameAsync(WebSocketLeg source, LegFrame frame, bool fromClient, MessageContextScope.Holder? holder, CancellationToken aborted)
    {
        // Interceptors that opted in to closes may rewrite the code and reason sent on (ControlFrameHandling.cs).
        var (status, reason) = holder is not null && ControlChain(fromClient) is { } closeChain
            ? await RunCloseChainAsync(closeChain, source, frame, fromClient, holder)
            : (frame.CloseStatus, frame.CloseReason);
        OnCloseReceived(source, frame, status, reason);
        await source.FlushAsync(aborted);
    }

    private static async ValueTask YieldToThreadPoolAsync() => await Task.CompletedTask.ConfigureAwait(ConfigureAwaitOptions.ForceYielding);

    private async ValueTask FlushTargetAsync(WebSocketLeg target, CancellationToken aborted)
    {
        try
        {
            await target.FlushAsync(aborted);
        }
        catch (Exception ex) when (IsTransportFailure(ex))
        {
            // The other side is gone; its own pump reports it too. This pump keeps reading its source until
            // the close handshake that OnLegLost starts completes.
            OnLegLost(fromClient: ReferenceEquals(target, _client));
        }
    }

    /// <summary>Open → <paramref name="next"/>, recording why; false when the connection was already closing.</summary>
    private bool TryStartClosing(ConnectionState next, WebSocketCloseStatus? status, string? reason, ConnectionCloseInitiator initiator)
    {
        Debug.Assert(next is ConnectionState.CloseSent or ConnectionState.CloseReceived);
        lock (_stateLock)
        {
            if (_state != ConnectionState.Open)
            {
                return false;
            }

            _closeStatus = status;
            _closeReason = reason;
            _initiator = initiator;
            _state = next;
            return true;
        }
    }

    /// <param name="source">The leg the close came from.</param>
    /// <param name="frame">The close as received: recorded, and echoed to <paramref name="source"/> in proxy mode.</param>
    /// <param name="status">The code sent on: to the other leg in proxy mode, in the answer in host mode.</param>
    /// <param name="reason">The reason sent with <paramref name="status"/>.</param>
    private void OnCloseReceived(WebSocketLeg source, LegFrame frame, WebSocketCloseStatus? status, string? reason)
    {
        var fromClient = ReferenceEquals(source, _client);
        TryStartClosing(ConnectionState.CloseReceived, frame.CloseStatus, frame.CloseReason, fromClient ? ConnectionCloseInitiator.Client : ConnectionCloseInitiator.Backend);

        // Relay the close, code and reason, to the other side, and answer the side that sent it (RFC 6455 5.5.1:
        // echo the code). Either may have been sent already, when this close answers one of ours.
        var other = fromClient ? _backend : _client;
        if (other is not null)
        {
            // The echo is queued first: the other leg's answer, relayed back by its own pump, must not take its place.
            source.SendClose(frame.CloseStatus, frame.CloseReason);
            SendCloseInBackground(other, status, reason);
        }
        else
        {
            // Host mode: the answer is the close the server sends, as the interceptors left it.
            source.SendClose(status, reason);
        }
        ArmCloseTimeout();
    }

    /// <summary>A leg ended without a close frame (or stopped answering): close the other one, if any.</summary>
    private void OnLegLost(bool fromClient)
    {
        if (fromClient)
        {
            TryStartClosing(ConnectionState.CloseSent, null, null, ConnectionCloseInitiator.Client);
            if (_backend is not null)
            {
                SendCloseInBackground(_backend, WebSocketCloseStatus.EndpointUnavailable, "client went away");
            }
        }
        else
        {
            TryStartClosing(ConnectionState.CloseSent, WebSocketProtocol.BadGateway, "backend connection lost", ConnectionCloseInitiator.Backend);
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
        lock (_stateLock)
        {
            if (_closeTimer is not null || _state is ConnectionState.Closed or ConnectionState.Aborted)
            {
                return;
            }

            _closeTimer = Route.Time.CreateTimer(
                static state => ((WebSocketConnection)state!).OnCloseTimedOut(), this, Route.Options.CloseTimeout, Timeout.InfiniteTimeSpan);
        }
    }

    private void OnCloseTimedOut()
    {
        lock (_stateLock)
        {
            // Once every pump has ended the handshake is over: the final flush has a timeout of its own.
            if (_finishing || _state is not (ConnectionState.CloseSent or ConnectionState.CloseReceived))
            {
                return;
            }

            _state = ConnectionState.Aborted;
        }

        // Cancels the pumps' flushes, then ends their reads: called here rather than registered on the token, so
        // that an idle connection holds no registration.
        try
        {
            _abort.Cancel();
        }
        finally
        {
            AbortLegs();
        }
    }

    private void AbortLegs()
    {
        _client.Abort();
        _backend?.Abort();
    }

    private async Task FinishAsync(Exception? fault)
    {
        lock (_stateLock)
        {
            _finishing = true;
        }

        await FlushWithTimeoutAsync(_client);
        if (_backend is not null)
        {
            await FlushWithTimeoutAsync(_backend);
        }

        WebSocketCloseStatus? status;
        string? reason;
        ConnectionCloseInitiator initiator;
        bool timedOut;
        lock (_stateLock)
        {
            if (_state == ConnectionState.Open)
            {
                // The client went away without a close frame.
                _initiator = ConnectionCloseInitiator.Client;
            }

            timedOut = _state == ConnectionState.Aborted;
            if (!timedOut)
            {
                _state = ConnectionState.Closed;
            }

            status = _closeStatus;
            reason = _closeReason;
            initiator = _initiator;
        }

        if (timedOut)
        {
            SluiceLog.CloseTimedOut(Route.Logger, Id, Route.Pattern, Route.Options.CloseTimeout);
        }

        // The token source is not disposed: a timer callback that already started may still cancel it.
        _closeTimer?.Dispose();
        _client.Dispose();
        _backend?.Dispose();
        // The gate and the send slots are not disposed: a send still waiting on them would never complete (disposing
        // drops SemaphoreSlim's waiters), and without a wait handle they hold nothing to free.
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
            await leg.FlushAsync().AsTask().WaitAsync(Route.Options.CloseTimeout, Route.Time);
        }
        catch (Exception ex) when (ex is TimeoutException || IsTransportFailure(ex))
        {
            leg.Abort();
        }
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
                await RunOutboundAsync(message, cause: null, cancellationToken);
                await _client.FlushAsync(cancellationToken);
            }
            finally
            {
                slots.Release();
            }
        }
        catch (Exception ex) when (IsTransportFailure(ex) || (ex is OperationCanceledException && _abort.IsCancellationRequested && !cancellationToken.IsCancellationRequested))
        {
            // The connection went away (or was aborted) while sending; like a send to a closed connection, the
            // message is discarded.
        }
        finally
        {
            Route.Metrics.SendQueueDepth.Add(-1);
        }
    }

    private async ValueTask RunNestedOutboundAsync(WebSocketMessage message, MessageContext current)
    {
        var context = new MessageContext(this, MessageDirection.Outbound, _outboundSink);
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

    /// <summary>
    /// Where a chain ends when its messages go to a leg: forward to one leg, replies to the other. Proxy mode's
    /// two pumps end in these, and so does every outbound chain (forward to the client; replies to the backend,
    /// or nowhere in host mode, where outbound messages come from the app itself).
    /// </summary>
    private sealed class LegSink(WebSocketConnection connection, WebSocketLeg? forwardTo, WebSocketLeg? replyTo) : MessageSink
    {
        public override ValueTask ForwardAsync(MessageContext context)
        {
            if (forwardTo is null)
            {
            }
            else if (context.Fragment is { } relay)
            {
                connection.WriteFragment(forwardTo, relay, context.Message);
            }
            else
            {
                connection.Write(forwardTo, context.Message);
            }

            return default;
        }

        public override void Reply(MessageContext context, WebSocketMessage message)
        {
            if (replyTo is not null)
            {
                connection.Write(replyTo, message);
            }
        }
    }
}
