using System.Buffers;
using System.Net.WebSockets;
using System.Text.Unicode;

namespace Sluice.Protocol;

/// <summary>
/// A leg that negotiated permessage-deflate, run by System.Net.WebSockets, which implements RFC 7692 over
/// the runtime's zlib. Sluice frames uncompressed legs itself (<see cref="FramedLeg"/>) for speed; compression
/// costs far more than framing, so here the maintained implementation is the better trade.
/// </summary>
/// <remarks>
/// The size limit applies to the inflated message: receiving stops, and the connection closes with 1009, as
/// soon as the inflated bytes exceed it, so a small compressed frame cannot expand into unbounded memory.
/// A frame whose data does not inflate fails the connection with a close frame, 1007, as RFC 7692 section 8
/// asks (and as Node's ws does): the runtime's socket aborts itself on such a frame, so the leg keeps the
/// stream and writes that close frame itself.
/// </remarks>
internal sealed class ManagedLeg : WebSocketLeg
{
    private const int MinimumBufferSize = 4096;

    private readonly WebSocket _socket;
    private readonly Stream _stream;
    private readonly bool _mask;
    private readonly long _maxMessageBytes;
    private readonly Action _abort;
    private readonly IDisposable? _transport;
    private readonly Lock _lock = new();
    private readonly Queue<(MessageType Type, byte[] Buffer, int Length, bool EndOfMessage)> _queue = new();

    // Messages queued while a streamed message is open wait here for its last fragment (nothing may interleave).
    private Queue<(MessageType Type, byte[] Buffer, int Length, bool EndOfMessage)>? _deferred;
    private long _deferredBytes;
    private bool _fragmentOpen;

    private byte[]? _receiveBuffer;
    private LegFrame _ready;
    private bool _hasReady;
    private readonly TimeProvider _time;
    private long _lastReceiveTicks;

    private bool _closeQueued;
    private bool _closeWritten;
    private WebSocketCloseStatus? _closeStatus;
    private string? _closeReason;
    private bool _flushing;
    private TaskCompletionSource? _flushWaiters;
    private Exception? _fault;
    private volatile bool _socketFailed;

    /// <param name="stream">The upgraded stream.</param>
    /// <param name="options">The socket's options, with the negotiated deflate options.</param>
    /// <param name="maxMessageBytes">The inflated message size limit.</param>
    /// <param name="abort">Tears the transport down.</param>
    /// <param name="transport">Disposed with the leg (a backend socket), or null for Kestrel's stream.</param>
    /// <param name="time">The clock of <see cref="LastReceiveTicks"/>, the connection's.</param>
    public ManagedLeg(Stream stream, WebSocketCreationOptions options, long maxMessageBytes, Action abort, IDisposable? transport, TimeProvider? time = null)
    {
        _time = time ?? TimeProvider.System;
        _lastReceiveTicks = _time.GetTimestamp();
        // The runtime's socket disposes its stream when it aborts itself (on data that does not inflate, for one);
        // the stream is not its to dispose, so that the leg can still write the close frame.
        _socket = WebSocket.CreateFromStream(new LeaveOpenStream(stream), options);
        _stream = stream;
        _mask = !options.IsServer;
        _maxMessageBytes = maxMessageBytes;
        _abort = abort;
        _transport = transport;
    }

    public override bool HasPendingWrites
    {
        get
        {
            lock (_lock)
            {
                return _queue.Count > 0 || (_closeQueued && !_closeWritten);
            }
        }
    }

    public override bool CloseSent
    {
        get
        {
            lock (_lock)
            {
                return _closeQueued;
            }
        }
    }

    public override long LastReceiveTicks => Volatile.Read(ref _lastReceiveTicks);

    public override bool HandlesKeepAlive => true;

    public override bool TryReceive(out LegFrame frame)
    {
        frame = _ready;
        if (!_hasReady)
        {
            return false;
        }

        _hasReady = false;
        return true;
    }

    public override async ValueTask<bool> ReceiveAsync(CancellationToken cancellationToken)
    {
        ReturnReceiveBuffer();
        try
        {
            // Wait for the next message without holding a buffer.
            var probe = await _socket.ReceiveAsync(Memory<byte>.Empty, cancellationToken);
            if (probe.MessageType == WebSocketMessageType.Close)
            {
                SetClose();
                return true;
            }

            var buffer = _receiveBuffer = ArrayPool<byte>.Shared.Rent(MinimumBufferSize);
            var length = 0;
            while (true)
            {
                if (length == buffer.Length)
                {
                    if (length > _maxMessageBytes)
                    {
                        throw TooBig();
                    }

                    var larger = ArrayPool<byte>.Shared.Rent((int)Math.Min(buffer.Length * 2L, _maxMessageBytes + 1));
                    buffer.AsSpan(0, length).CopyTo(larger);
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = _receiveBuffer = larger;
                }

                var result = await _socket.ReceiveAsync(buffer.AsMemory(length), cancellationToken);
                if (result.MessageType == WebSocketMessageType.Close)
                {
                    SetClose();
                    return true;
                }

                length += result.Count;
                if (length > _maxMessageBytes)
                {
                    throw TooBig();
                }

                if (result.EndOfMessage)
                {
                    var type = result.MessageType == WebSocketMessageType.Text ? MessageType.Text : MessageType.Binary;
                    var payload = buffer.AsMemory(0, length);
                    if (type == MessageType.Text && !Utf8.IsValid(payload.Span))
                    {
                        throw new WebSocketProtocolException(WebSocketCloseStatus.InvalidPayloadData, "A text message is not valid UTF-8.");
                    }

                    _ready = LegFrame.Message(type, payload);
                    _hasReady = true;
                    Volatile.Write(ref _lastReceiveTicks, _time.GetTimestamp());
                    return true;
                }
            }
        }
        catch (WebSocketException ex) when (ex.WebSocketErrorCode == WebSocketError.ConnectionClosedPrematurely)
        {
            return false;
        }
        catch (WebSocketException ex) when (ex.WebSocketErrorCode is WebSocketError.Faulted or WebSocketError.InvalidMessageType or WebSocketError.HeaderError or WebSocketError.NotAWebSocket)
        {
            throw new WebSocketProtocolException(WebSocketCloseStatus.ProtocolError, ex.Message);
        }
        catch (WebSocketException ex) when (ex.WebSocketErrorCode == WebSocketError.Success && _socket.State == WebSocketState.Aborted)
        {
            // Only the inflater throws without an error code, and the socket has aborted itself without a close frame.
            _socketFailed = true;
            throw new WebSocketProtocolException(WebSocketCloseStatus.InvalidPayloadData, $"A compressed message does not inflate: {ex.Message}");
        }
    }

    public override bool Send(MessageType type, ReadOnlySpan<byte> payload)
    {
        if (type >= MessageType.Close)
        {
            // System.Net.WebSockets sends no control frame on request but its close.
            return false;
        }

        lock (_lock)
        {
            if (_closeQueued || _fault is not null)
            {
                return false;
            }

            if (_fragmentOpen)
            {
                _deferredBytes += payload.Length;
                if (_deferredBytes > FrameWriter.MaxDeferredBytes)
                {
                    _fault ??= FrameWriter.DeferredOverflow();
                    return false;
                }
            }

            var copy = ArrayPool<byte>.Shared.Rent(Math.Max(1, payload.Length));
            payload.CopyTo(copy);
            (_fragmentOpen ? _deferred ??= new() : _queue).Enqueue((type, copy, payload.Length, true));
            return true;
        }
    }

    public override bool SendFragment(MessageType type, bool first, bool final, ReadOnlySpan<byte> payload)
    {
        lock (_lock)
        {
            if (_closeQueued || _fault is not null)
            {
                return false;
            }

            // The runtime's socket continues a message it has not ended: every fragment is sent with the message's type.
            var copy = ArrayPool<byte>.Shared.Rent(Math.Max(1, payload.Length));
            payload.CopyTo(copy);
            _queue.Enqueue((type, copy, payload.Length, final));
            _fragmentOpen = !final;
            if (final && _deferred is not null)
            {
                _deferredBytes = 0;
                while (_deferred.TryDequeue(out var item))
                {
                    _queue.Enqueue(item);
                }
            }

            return true;
        }
    }

    public override bool SendPing() => false;

    // System.Net.WebSockets answers pings itself and never hands them out.
    public override bool SendPong(ReadOnlySpan<byte> payload) => false;

    public override bool SendClose(WebSocketCloseStatus? status, string? reason)
    {
        lock (_lock)
        {
            if (_closeQueued)
            {
                return false;
            }

            _closeQueued = true;
            ReturnDeferred();
            _closeStatus = status;
            _closeReason = reason;
            return true;
        }
    }

    public override ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            if (_fault is not null)
            {
                return ValueTask.FromException(_fault);
            }

            if (_flushing)
            {
                _flushWaiters ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                return new ValueTask(_flushWaiters.Task.WaitAsync(cancellationToken));
            }

            if (_queue.Count == 0 && (!_closeQueued || _closeWritten))
            {
                return default;
            }

            _flushing = true;
        }

        return FlushLoopAsync(cancellationToken);
    }

    public override async Task DrainAsync(CancellationToken cancellationToken)
    {
        if (_socketFailed)
        {
            // The runtime's socket aborted itself: nothing more can be read through it.
            return;
        }

        // A limit was broken but the framing is intact: read on (inflated into a scratch buffer and discarded) until the
        // peer's close, so that TCP is not closed under unread data, whose reset could destroy our close frame in flight.
        var scratch = ArrayPool<byte>.Shared.Rent(MinimumBufferSize);
        try
        {
            while ((await _socket.ReceiveAsync(scratch.AsMemory(), cancellationToken)).MessageType != WebSocketMessageType.Close)
            {
            }
        }
        catch (WebSocketException)
        {
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(scratch);
        }
    }

    public override void Abort()
    {
        _socket.Abort();
        _abort();
    }

    public override void Dispose()
    {
        _socket.Dispose();
        ReturnReceiveBuffer();
        lock (_lock)
        {
            _fault ??= new ObjectDisposedException(nameof(ManagedLeg));
            ReturnDeferred();
            if (!_flushing)
            {
                while (_queue.TryDequeue(out var item))
                {
                    ArrayPool<byte>.Shared.Return(item.Buffer);
                }
            }
        }

        _transport?.Dispose();
    }

    private async ValueTask FlushLoopAsync(CancellationToken cancellationToken)
    {
        try
        {
            while (true)
            {
                (MessageType Type, byte[] Buffer, int Length, bool EndOfMessage) item;
                var writeClose = false;
                lock (_lock)
                {
                    if (!_queue.TryDequeue(out item))
                    {
                        if (_closeQueued && !_closeWritten)
                        {
                            _closeWritten = true;
                            writeClose = true;
                        }
                        else
                        {
                            _flushing = false;
                            var waiters = _flushWaiters;
                            _flushWaiters = null;
                            waiters?.TrySetResult();
                            return;
                        }
                    }
                }

                if (writeClose)
                {
                    if (_socketFailed)
                    {
                        await WriteCloseFrameAsync(cancellationToken);
                    }
                    else
                    {
                        await _socket.CloseOutputAsync(_closeStatus ?? WebSocketCloseStatus.Empty, _closeReason, cancellationToken);
                    }

                    continue;
                }

                if (_socketFailed)
                {
                    // The connection is failing: only the close frame goes out.
                    ArrayPool<byte>.Shared.Return(item.Buffer);
                    continue;
                }

                try
                {
                    var type = item.Type == MessageType.Text ? WebSocketMessageType.Text : WebSocketMessageType.Binary;
                    await _socket.SendAsync(item.Buffer.AsMemory(0, item.Length), type, item.EndOfMessage, cancellationToken);
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(item.Buffer);
                }
            }
        }
        catch (Exception ex)
        {
            TaskCompletionSource? waiters;
            lock (_lock)
            {
                _fault ??= ex;
                _flushing = false;
                waiters = _flushWaiters;
                _flushWaiters = null;
                ReturnDeferred();
                while (_queue.TryDequeue(out var item))
                {
                    ArrayPool<byte>.Shared.Return(item.Buffer);
                }
            }

            waiters?.TrySetException(ex);
            throw;
        }
    }

    /// <summary>Writes the close frame past the runtime's socket, which has aborted: nothing else writes to the stream now.</summary>
    private async ValueTask WriteCloseFrameAsync(CancellationToken cancellationToken)
    {
        using var writer = new FrameWriter(_stream, _mask);
        writer.WriteClose(_closeStatus, _closeReason);
        await writer.FlushAsync(cancellationToken);
    }

    private void SetClose()
    {
        _ready = LegFrame.Close(
            _socket.CloseStatus is WebSocketCloseStatus.Empty ? null : _socket.CloseStatus,
            string.IsNullOrEmpty(_socket.CloseStatusDescription) ? null : _socket.CloseStatusDescription);
        _hasReady = true;
        Volatile.Write(ref _lastReceiveTicks, _time.GetTimestamp());
    }

    /// <summary>Called under the lock.</summary>
    private void ReturnDeferred()
    {
        _deferredBytes = 0;
        while (_deferred?.TryDequeue(out var item) == true)
        {
            ArrayPool<byte>.Shared.Return(item.Buffer);
        }
    }

    private void ReturnReceiveBuffer()
    {
        if (_receiveBuffer is not null)
        {
            ArrayPool<byte>.Shared.Return(_receiveBuffer);
            _receiveBuffer = null;
        }
    }

    private WebSocketProtocolException TooBig() =>
        new(WebSocketCloseStatus.MessageTooBig, $"The message is larger than the limit of {_maxMessageBytes} bytes once inflated.");
}
