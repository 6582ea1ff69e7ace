using System.Buffers;
using System.Buffers.Binary;
using System.Net.WebSockets;
using System.Text;

namespace Sluice.Protocol;

/// <summary>
/// Frames messages onto a stream. Any thread may append; appended frames are coalesced into one pooled
/// buffer and written by a single flusher, so that a burst of messages costs one write.
/// </summary>
/// <remarks>
/// <para>Ownership: <see cref="Write"/> copies the payload (masking it on the way for a client), so the caller
/// keeps its buffer. The writer rents its buffer when the first frame arrives and returns it once written,
/// so an idle connection holds none.</para>
/// <para>Backpressure: nothing here queues without bound. A producer appends and then awaits
/// <see cref="FlushAsync"/>, which completes when the stream has taken the bytes; a slow peer therefore
/// slows whoever feeds it.</para>
/// </remarks>
internal sealed class FrameWriter : IDisposable
{
    private const int MinimumBufferSize = 4096;

    private readonly Stream _stream;
    private readonly bool _mask;
    private readonly Lock _lock = new();

    private byte[]? _pending;
    private int _pendingLength;
    private bool _flushing;
    private TaskCompletionSource? _flushWaiters;
    private Exception? _fault;
    private bool _closeSent;
    private bool _disposed;

    // While a streamed message is open (its first fragment appended, not its last), other data frames are held here and
    // follow its last fragment: nothing may interleave with a fragmented message (RFC 6455 5.4). Control frames may.
    private bool _fragmentOpen;
    private byte[]? _deferred;
    private int _deferredLength;

    /// <summary>
    /// How many bytes may wait behind a streamed message. Replies and topic frames do not wait for the outbound gate, so a
    /// client that keeps provoking replies while it reads a long download slowly would otherwise grow this without end;
    /// beyond it the leg fails and the connection ends.
    /// </summary>
    internal const int MaxDeferredBytes = 16 * 1024 * 1024;

    internal static IOException DeferredOverflow() =>
        new($"more than {MaxDeferredBytes} bytes of messages waited behind a streamed message");

    /// <param name="stream">The connection's stream.</param>
    /// <param name="mask">True on a client, whose frames must be masked.</param>
    public FrameWriter(Stream stream, bool mask)
    {
        _stream = stream;
        _mask = mask;
    }

    /// <summary>Gets whether a close frame has been appended; later frames are discarded.</summary>
    public bool CloseSent
    {
        get
        {
            lock (_lock)
            {
                return _closeSent;
            }
        }
    }

    /// <summary>Gets whether frames wait to be written.</summary>
    public bool HasPending => Volatile.Read(ref _pendingLength) > 0;

    /// <summary>Appends a data message as one frame. Returns false when the writer is closed or failed.</summary>
    public bool Write(MessageType type, ReadOnlySpan<byte> payload) => Append((byte)type, payload, isClose: false);

    /// <summary>Appends bytes that are already a complete, unmasked frame (a server's frame shared by many connections).</summary>
    public bool WriteFramed(ReadOnlySpan<byte> frame)
    {
        lock (_lock)
        {
            if (_closeSent || _fault is not null)
            {
                return false;
            }

            if (_fragmentOpen)
            {
                if (_deferredLength + (long)frame.Length > MaxDeferredBytes)
                {
                    _fault ??= DeferredOverflow();
                    return false;
                }

                EnsureCapacity(ref _deferred, _deferredLength, frame.Length);
                frame.CopyTo(_deferred.AsSpan(_deferredLength));
                _deferredLength += frame.Length;
                return true;
            }

            EnsureCapacity(frame.Length);
            frame.CopyTo(_pending.AsSpan(_pendingLength));
            Volatile.Write(ref _pendingLength, _pendingLength + frame.Length);
            return true;
        }
    }

    /// <summary>
    /// Appends one fragment of a streamed message: the first carries <paramref name="type"/>, the others are
    /// continuations, and <paramref name="final"/> sets FIN. Data messages appended meanwhile follow the last fragment.
    /// </summary>
    public bool WriteFragment(MessageType type, bool first, bool final, ReadOnlySpan<byte> payload) =>
        Append(first ? (byte)type : WebSocketProtocol.OpcodeContinuation, payload, isClose: false, fragment: true, fin: final);

    /// <summary>Appends a ping.</summary>
    public bool WritePing(ReadOnlySpan<byte> payload) => Append(WebSocketProtocol.OpcodePing, payload, isClose: false);

    /// <summary>Appends a pong answering a ping, or unsolicited as a heartbeat.</summary>
    public bool WritePong(ReadOnlySpan<byte> payload) => Append(WebSocketProtocol.OpcodePong, payload, isClose: false);

    /// <summary>
    /// Appends a close frame; nothing is appended after it. A null <paramref name="status"/> sends an empty
    /// close frame (received as 1005, no status). Returns false if a close frame was already appended.
    /// </summary>
    public bool WriteClose(WebSocketCloseStatus? status, string? reason)
    {
        if (status is null)
        {
            return Append(WebSocketProtocol.OpcodeClose, default, isClose: true);
        }

        Span<byte> body = stackalloc byte[WebSocketProtocol.MaxControlPayload];
        BinaryPrimitives.WriteUInt16BigEndian(body, (ushort)status.Value);
        var length = 2 + EncodeReason(reason, body[2..]);
        return Append(WebSocketProtocol.OpcodeClose, body[..length], isClose: true);
    }

    /// <summary>
    /// Writes everything appended so far. Completes when the stream has taken it; if another flush is running,
    /// completes when that flush has written everything, this caller's frames included.
    /// </summary>
    public ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            if (_fault is not null)
            {
                return ValueTask.FromException(_fault);
            }

            if (_flushing)
            {
                // Rare: two producers flushing at once. Only then does a flush allocate.
                _flushWaiters ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                return new ValueTask(_flushWaiters.Task.WaitAsync(cancellationToken));
            }

            if (_pendingLength == 0)
            {
                return default;
            }

            _flushing = true;
        }

        return FlushLoopAsync(cancellationToken);
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            _fault ??= new ObjectDisposedException(nameof(FrameWriter));
            ReturnDeferred();

            // A running flush owns its buffer and returns it itself.
            if (_pending is not null && !_flushing)
            {
                ArrayPool<byte>.Shared.Return(_pending);
                _pending = null;
                _pendingLength = 0;
            }
        }
    }

    private async ValueTask FlushLoopAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            byte[] buffer;
            int length;
            TaskCompletionSource? waiters;
            lock (_lock)
            {
                if (_pendingLength == 0 || _disposed)
                {
                    _flushing = false;
                    waiters = _flushWaiters;
                    _flushWaiters = null;
                    ReturnPendingIfDisposed();
                    buffer = null!;
                    length = 0;
                }
                else
                {
                    buffer = _pending!;
                    length = _pendingLength;
                    _pending = null;
                    _pendingLength = 0;
                    waiters = null;
                }
            }

            if (length == 0)
            {
                waiters?.TrySetResult();
                return;
            }

            try
            {
                await _stream.WriteAsync(buffer.AsMemory(0, length), cancellationToken);
            }
            catch (Exception ex)
            {
                lock (_lock)
                {
                    _fault ??= ex;
                    _flushing = false;
                    ReturnDeferred();
                    waiters = _flushWaiters;
                    _flushWaiters = null;
                    if (_pending is not null)
                    {
                        ArrayPool<byte>.Shared.Return(_pending);
                        _pending = null;
                        _pendingLength = 0;
                    }
                }

                waiters?.TrySetException(ex);
                throw;
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }
    }

    private void ReturnPendingIfDisposed()
    {
        if (_disposed && _pending is not null)
        {
            ArrayPool<byte>.Shared.Return(_pending);
            _pending = null;
            _pendingLength = 0;
        }
    }

    private bool Append(byte opcode, ReadOnlySpan<byte> payload, bool isClose, bool fragment = false, bool fin = true)
    {
        var headerSize = 2 + (payload.Length < 126 ? 0 : payload.Length <= ushort.MaxValue ? 2 : 8) + (_mask ? 4 : 0);
        var frameSize = headerSize + payload.Length;

        lock (_lock)
        {
            if (_closeSent || _fault is not null)
            {
                return false;
            }

            if (isClose)
            {
                _closeSent = true;

                // Data held behind an unfinished streamed message never goes: nothing is sent after a close.
                ReturnDeferred();
            }

            if (_fragmentOpen && !fragment && (opcode & 0x08) == 0)
            {
                if (_deferredLength + (long)frameSize > MaxDeferredBytes)
                {
                    _fault ??= DeferredOverflow();
                    return false;
                }

                EnsureCapacity(ref _deferred, _deferredLength, frameSize);
                WriteFrame(_deferred.AsSpan(_deferredLength, frameSize), opcode, payload, headerSize, fin);
                _deferredLength += frameSize;
                return true;
            }

            var release = fragment && fin && _deferredLength > 0;
            EnsureCapacity(frameSize + (release ? _deferredLength : 0));
            WriteFrame(_pending.AsSpan(_pendingLength, frameSize), opcode, payload, headerSize, fin);
            var length = _pendingLength + frameSize;
            if (fragment)
            {
                _fragmentOpen = !fin;
                if (release)
                {
                    _deferred.AsSpan(0, _deferredLength).CopyTo(_pending.AsSpan(length));
                    length += _deferredLength;
                    ReturnDeferred();
                }
            }

            Volatile.Write(ref _pendingLength, length);
            return true;
        }
    }

    private void WriteFrame(Span<byte> frame, byte opcode, ReadOnlySpan<byte> payload, int headerSize, bool fin)
    {
        frame[0] = (byte)((fin ? 0x80 : 0) | opcode);
        var lengthByte = _mask ? (byte)0x80 : (byte)0;
        if (payload.Length < 126)
        {
            frame[1] = (byte)(lengthByte | payload.Length);
        }
        else if (payload.Length <= ushort.MaxValue)
        {
            frame[1] = (byte)(lengthByte | 126);
            BinaryPrimitives.WriteUInt16BigEndian(frame[2..], (ushort)payload.Length);
        }
        else
        {
            frame[1] = (byte)(lengthByte | 127);
            BinaryPrimitives.WriteUInt64BigEndian(frame[2..], (ulong)payload.Length);
        }

        if (_mask)
        {
            var key = MaskKeys.Next();
            WebSocketMask.WriteKey(frame.Slice(headerSize - 4, 4), key);
            WebSocketMask.CopyAndApply(payload, frame[headerSize..], key);
        }
        else
        {
            payload.CopyTo(frame[headerSize..]);
        }
    }

    private void ReturnDeferred()
    {
        if (_deferred is not null)
        {
            ArrayPool<byte>.Shared.Return(_deferred);
            _deferred = null;
            _deferredLength = 0;
        }
    }

    private static void EnsureCapacity([System.Diagnostics.CodeAnalysis.NotNull] ref byte[]? buffer, int length, int frameSize)
    {
        var needed = length + frameSize;
        if (buffer is not null && buffer.Length >= needed)
        {
            return;
        }

        var larger = ArrayPool<byte>.Shared.Rent(Math.Max(MinimumBufferSize, Math.Max(needed, (buffer?.Length ?? 0) * 2)));
        if (buffer is not null)
        {
            buffer.AsSpan(0, length).CopyTo(larger);
            ArrayPool<byte>.Shared.Return(buffer);
        }

        buffer = larger;
    }

    private void EnsureCapacity(int frameSize)
    {
        var needed = _pendingLength + frameSize;
        if (_pending is not null && _pending.Length >= needed)
        {
            return;
        }

        var larger = ArrayPool<byte>.Shared.Rent(Math.Max(MinimumBufferSize, Math.Max(needed, (_pending?.Length ?? 0) * 2)));
        if (_pending is not null)
        {
            _pending.AsSpan(0, _pendingLength).CopyTo(larger);
            ArrayPool<byte>.Shared.Return(_pending);
        }

        _pending = larger;
    }

    /// <summary>Encodes a close reason, cut at a character boundary to fit the 123 bytes a close frame allows.</summary>
    internal static int EncodeReason(string? reason, Span<byte> destination)
    {
        if (string.IsNullOrEmpty(reason))
        {
            return 0;
        }

        destination = destination[..Math.Min(destination.Length, WebSocketProtocol.MaxCloseReasonBytes)];
        if (Encoding.UTF8.GetByteCount(reason) <= destination.Length)
        {
            return Encoding.UTF8.GetBytes(reason, destination);
        }

        var written = 0;
        foreach (var rune in reason.EnumerateRunes())
        {
            if (written + rune.Utf8SequenceLength > destination.Length)
            {
                break;
            }

            written += rune.EncodeToUtf8(destination[written..]);
        }

        return written;
    }
}
