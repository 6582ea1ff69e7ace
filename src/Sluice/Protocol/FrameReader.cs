using System.Buffers;
using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.WebSockets;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Text.Unicode;

namespace Sluice.Protocol;

/// <summary>The kinds of frame <see cref="FrameReader"/> hands to its owner.</summary>
internal enum FrameKind : byte
{
    Message,
    Ping,
    Pong,
    Close,

    /// <summary>A piece of a streamed binary message; see <see cref="Frame.IsFinal"/> and <see cref="Frame.Offset"/>.</summary>
    Fragment,
}

/// <summary>
/// A complete data message or a control frame. <see cref="Payload"/> points into the reader's buffers and
/// is valid until the next call to <see cref="FrameReader.TryRead"/> or <see cref="FrameReader.FillAsync"/>.
/// </summary>
internal readonly struct Frame(FrameKind kind, MessageType messageType, ReadOnlyMemory<byte> payload, bool isFinal = true, long offset = 0)
{
    public FrameKind Kind { get; } = kind;

    public MessageType MessageType { get; } = messageType;

    public ReadOnlyMemory<byte> Payload { get; } = payload;

    /// <summary>For a <see cref="FrameKind.Fragment"/>, whether it ends its message.</summary>
    public bool IsFinal { get; } = isFinal;

    /// <summary>For a <see cref="FrameKind.Fragment"/>, how many bytes of its message were handed out before it.</summary>
    public long Offset { get; } = offset;
}

/// <summary>
/// Parses RFC 6455 frames from a stream: validates every header, unmasks in place, reassembles fragmented
/// messages and checks UTF-8, so that its owner only ever sees whole, valid messages.
/// </summary>
/// <remarks>
/// Buffers come from <see cref="ArrayPool{T}.Shared"/>. While nothing is buffered the reader holds no
/// buffer at all: it waits with a zero-byte read and rents only when data has arrived, so an idle
/// connection costs no payload memory (the technique of YARP's StreamCopier and Kestrel's socket transport).
/// Single consumer: one pump owns a reader.
/// </remarks>
internal sealed class FrameReader : IDisposable
{
    private const int MinimumBufferSize = 4096;

    // While a message streams, reads take up to this much at a time: each read becomes one fragment relayed on.
    private const int StreamBufferSize = 64 * 1024;

    private readonly Stream _stream;
    private readonly TimeProvider _time;
    private readonly bool _expectMasked;
    private readonly long _maxMessageBytes;

    // Streaming (0: off): a binary message longer than _streamAboveBytes is handed out piece by piece, up to _streamMaxBytes.
    private readonly long _streamAboveBytes;
    private readonly long _streamMaxBytes;
    private bool _streaming;
    private long _streamOffset;
    private long _frameRemaining;
    private bool _frameFin;
    private bool _frameMasked;
    private uint _frameKey;
    private int _frameMaskOffset;

    private byte[]? _buffer;
    private int _start;
    private int _end;

    // A fragmented message being reassembled.
    private byte[]? _assembly;
    private int _assemblyLength;
    private MessageType _fragmentType;
    private bool _inFragmentedMessage;
    private bool _releaseAssembly;
    private bool _disposed;

    // After a protocol failure the reader only looks for the peer's close frame: the rest of the refused frame and
    // every later data frame are skipped as they arrive, never buffered whole.
    private bool _failed;
    private bool _framingLost;
    private long _skip;

    /// <param name="stream">The connection's stream.</param>
    /// <param name="expectMasked">True on a server, which must receive masked frames; false on a client.</param>
    /// <param name="maxMessageBytes">The largest message, in bytes, after reassembly.</param>
    /// <param name="initialData">Bytes already read past the handshake, which belong to the first frames.</param>
    /// <param name="time">The clock of <see cref="LastReceiveTicks"/>; the system's by default.</param>
    /// <param name="streamAboveBytes">Binary messages longer than this are streamed as <see cref="FrameKind.Fragment"/>s; 0 never streams.</param>
    /// <param name="streamMaxBytes">The largest streamed message, in bytes.</param>
    public FrameReader(Stream stream, bool expectMasked, long maxMessageBytes, ReadOnlySpan<byte> initialData = default, TimeProvider? time = null, long streamAboveBytes = 0, long streamMaxBytes = 0)
    {
        _streamAboveBytes = streamAboveBytes;
        _streamMaxBytes = streamMaxBytes;
        _stream = stream;
        _time = time ?? TimeProvider.System;
        LastReceiveTicks = _time.GetTimestamp();
        _expectMasked = expectMasked;
        _maxMessageBytes = maxMessageBytes;
        if (!initialData.IsEmpty)
        {
            _buffer = ArrayPool<byte>.Shared.Rent(Math.Max(MinimumBufferSize, initialData.Length));
            initialData.CopyTo(_buffer);
            _end = initialData.Length;
        }
    }

    /// <summary>Gets the timestamp (<see cref="TimeProvider.GetTimestamp"/>) when bytes last arrived.</summary>
    public long LastReceiveTicks { get; private set; }

    /// <summary>
    /// Gets whether, after <see cref="TryRead"/> threw, frame boundaries are still known, so that the peer's close
    /// frame can be found with <see cref="TryReadClose"/>. False only when a frame header itself was unreadable.
    /// </summary>
    public bool CanFindClose => _failed && !_framingLost;

    /// <summary>Gets whether a message or frame is partly buffered.</summary>
    public bool HasPartialData => _end > _start || _inFragmentedMessage;

    /// <summary>
    /// Parses the next frame from buffered bytes. Returns false when more bytes are needed; call
    /// <see cref="FillAsync"/> then. Data fragments are absorbed until their message is whole.
    /// </summary>
    /// <exception cref="WebSocketProtocolException">The peer broke the protocol or a limit.</exception>
    public bool TryRead(out Frame frame)
    {
        Debug.Assert(!_failed, "After a failure only TryReadClose is called.");
        try
        {
            return TryReadCore(out frame);
        }
        catch (WebSocketProtocolException)
        {
            _failed = true;
            _inFragmentedMessage = false;
            _streaming = false;
            _frameRemaining = 0;
            ReleaseAssembly();
            throw;
        }
    }

    /// <summary>
    /// After <see cref="TryRead"/> threw: parses the frames that follow, discarding all but a close frame, so that the
    /// close handshake completes while the peer is still sending (the rest of a message over the limit, say).
    /// Returns true when the peer's close frame has arrived; false when more bytes are needed.
    /// </summary>
    public bool TryReadClose()
    {
        Debug.Assert(CanFindClose);
        while (SkipPending() && TryReadHeader(out var opcode, out _, out var headerSize, out var length))
        {
            if (opcode != WebSocketProtocol.OpcodeClose || length > WebSocketProtocol.MaxControlPayload)
            {
                _start += headerSize;
                _skip = length;
                continue;
            }

            if (_end - _start < headerSize + length)
            {
                EnsureCapacity(headerSize + (int)length);
                return false;
            }

            _start += headerSize + (int)length;
            return true;
        }

        return false;
    }

    private bool TryReadCore(out Frame frame)
    {
        if (_releaseAssembly)
        {
            ReleaseAssembly();
        }

        while (true)
        {
            if (_frameRemaining > 0)
            {
                // In the middle of a streamed frame: hand out what has arrived of it.
                if (_end == _start)
                {
                    frame = default;
                    return false;
                }

                frame = TakeStreamedPiece();
                return true;
            }

            if (!TryReadHeader(out var opcode, out var masked, out var headerSize, out var length))
            {
                frame = default;
                return false;
            }

            var available = _end - _start;
            var span = _buffer.AsSpan(_start, available);
            var b0 = span[0];
            var fin = (b0 & 0x80) != 0;
            try
            {
                ValidateHeader(b0, opcode, fin, masked, length);
            }
            catch (WebSocketProtocolException)
            {
                // The header is whole, so the frame's end is known: skip its payload, keeping the frame boundaries.
                _start += headerSize;
                _skip = length;
                throw;
            }

            if (IsStreamed(opcode, length))
            {
                if (BeginStreamedFrame(opcode, fin, masked, headerSize, length, out frame))
                {
                    return true;
                }

                continue;
            }

            var frameSize = headerSize + length;
            if (available < frameSize)
            {
                EnsureCapacity((int)frameSize);
                frame = default;
                return false;
            }

            var payload = _buffer.AsMemory(_start + headerSize, (int)length);
            if (masked)
            {
                WebSocketMask.Apply(payload.Span, WebSocketMask.ReadKey(span.Slice(headerSize - 4, 4)));
            }

            _start += (int)frameSize;

            switch (opcode)
            {
                case WebSocketProtocol.OpcodePing:
                    frame = new Frame(FrameKind.Ping, default, payload);
                    return true;
                case WebSocketProtocol.OpcodePong:
                    frame = new Frame(FrameKind.Pong, default, payload);
                    return true;
                case WebSocketProtocol.OpcodeClose:
                    ValidateClosePayload(payload.Span);
                    frame = new Frame(FrameKind.Close, default, payload);
                    return true;
            }

            if (opcode != WebSocketProtocol.OpcodeContinuation && fin)
            {
                // The common case: a whole message in one frame, handed out where it lies.
                var type = (MessageType)opcode;
                if (type == MessageType.Text && !Utf8.IsValid(payload.Span))
                {
                    throw InvalidText();
                }

                frame = new Frame(FrameKind.Message, type, payload);
                return true;
            }

            if (opcode != WebSocketProtocol.OpcodeContinuation)
            {
                _inFragmentedMessage = true;
                _fragmentType = (MessageType)opcode;
                _assemblyLength = 0;
            }

            AppendToAssembly(payload.Span);
            if (fin)
            {
                _inFragmentedMessage = false;
                _releaseAssembly = true;
                var message = _assembly.AsMemory(0, _assemblyLength);
                if (_fragmentType == MessageType.Text && !Utf8.IsValid(message.Span))
                {
                    throw InvalidText();
                }

                frame = new Frame(FrameKind.Message, _fragmentType, message);
                return true;
            }
        }
    }

    /// <summary>Parses the frame header at the read position; false when it is not all buffered yet.</summary>
    private bool TryReadHeader(out byte opcode, out bool masked, out int headerSize, out long length)
    {
        var available = _end - _start;
        if (available < 2)
        {
            (opcode, masked, headerSize, length) = (0, false, 0, 0);
            return false;
        }

        var span = _buffer.AsSpan(_start, available);
        opcode = (byte)(span[0] & 0x0F);
        masked = (span[1] & 0x80) != 0;
        headerSize = 2 + (masked ? 4 : 0);
        length = span[1] & 0x7F;
        if (length == 126)
        {
            headerSize += 2;
        }
        else if (length == 127)
        {
            headerSize += 8;
        }

        if (available < headerSize)
        {
            return false;
        }

        if (length == 126)
        {
            length = BinaryPrimitives.ReadUInt16BigEndian(span[2..]);
        }
        else if (length == 127)
        {
            var length64 = BinaryPrimitives.ReadUInt64BigEndian(span[2..]);
            if (length64 > long.MaxValue)
            {
                _framingLost = true;
                throw Protocol("The frame length has its most significant bit set.");
            }

            length = (long)length64;
        }

        return true;
    }

    private void ReturnBuffer()
    {
        _start = _end = 0;
        if (_buffer is not null)
        {
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = null;
        }
    }

    /// <summary>Discards what has arrived of a skipped frame; false while some of it is still to come.</summary>
    private bool SkipPending()
    {
        if (_skip > 0)
        {
            var skipped = (int)Math.Min(_skip, _end - _start);
            _start += skipped;
            _skip -= skipped;
        }

        return _skip == 0;
    }

    /// <summary>
    /// When nothing is buffered, gives the buffer back and waits for data with a zero-byte read: the stream's own
    /// pending read is all an idle leg holds (<see cref="FillAsync"/> after it then completes at once).
    /// </summary>
    public ValueTask<int> WaitForDataAsync()
    {
        if (_start != _end || _disposed)
        {
            return default;
        }

        ReturnBuffer();
#pragma warning disable CA2022 // A zero-byte read only waits for data; there is nothing to read exactly.
        return _stream.ReadAsync(Memory<byte>.Empty, CancellationToken.None);
#pragma warning restore CA2022
    }

    /// <summary>
    /// Reads more bytes from the stream. Returns false when the peer has closed the connection.
    /// Call only after <see cref="TryRead"/> returned false.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<bool> FillAsync(CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);

        if (_start == _end)
        {
            // Hold nothing while the peer is quiet: return the buffer and wait for data with a zero-byte read.
            ReturnBuffer();

#pragma warning disable CA2022 // A zero-byte read only waits for data; there is nothing to read exactly.
            await _stream.ReadAsync(Memory<byte>.Empty, cancellationToken);
#pragma warning restore CA2022
            _buffer = ArrayPool<byte>.Shared.Rent(_frameRemaining > 0 ? StreamBufferSize : MinimumBufferSize);
        }
        else if (_end == _buffer!.Length)
        {
            EnsureCapacity(_end - _start + 1);
        }

        var read = await _stream.ReadAsync(_buffer.AsMemory(_end), cancellationToken);
        if (read == 0)
        {
            return false;
        }

        _end += read;
        LastReceiveTicks = _time.GetTimestamp();
        return true;
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        if (_buffer is not null)
        {
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = null;
        }

        ReleaseAssembly();
    }

    private void ValidateHeader(byte b0, byte opcode, bool fin, bool masked, long length)
    {
        if ((b0 & 0x70) != 0)
        {
            throw Protocol("A reserved bit is set but no extension was negotiated.");
        }

        if (masked != _expectMasked)
        {
            throw Protocol(_expectMasked ? "A client frame is not masked." : "A server frame is masked.");
        }

        if ((opcode & 0x08) != 0)
        {
            if (opcode is not (WebSocketProtocol.OpcodeClose or WebSocketProtocol.OpcodePing or WebSocketProtocol.OpcodePong))
            {
                throw Protocol($"Reserved control opcode 0x{opcode:X}.");
            }

            if (!fin)
            {
                throw Protocol("A control frame is fragmented.");
            }

            if (length > WebSocketProtocol.MaxControlPayload)
            {
                throw Protocol("A control frame payload is longer than 125 bytes.");
            }

            return;
        }

        switch (opcode)
        {
            case WebSocketProtocol.OpcodeContinuation when !_inFragmentedMessage:
                throw Protocol("A continuation frame arrived with no message to continue.");
            case WebSocketProtocol.OpcodeText or WebSocketProtocol.OpcodeBinary when _inFragmentedMessage:
                throw Protocol("A new message started before the fragmented one finished.");
            case > WebSocketProtocol.OpcodeBinary:
                throw Protocol($"Reserved data opcode 0x{opcode:X}.");
        }

        var continuation = opcode == WebSocketProtocol.OpcodeContinuation;
        var total = (continuation ? (_streaming ? _streamOffset : _assemblyLength) : 0) + length;

        // On a streaming leg a binary message is limited by the streaming limit, whether it ends up streamed or not.
        var binary = opcode == WebSocketProtocol.OpcodeBinary || (continuation && _fragmentType == MessageType.Binary);
        var limit = _streamAboveBytes > 0 && binary ? _streamMaxBytes : _maxMessageBytes;
        if (total > limit)
        {
            throw new WebSocketProtocolException(
                WebSocketCloseStatus.MessageTooBig,
                $"The message is larger than the limit of {limit} bytes.");
        }
    }

    private static void ValidateClosePayload(ReadOnlySpan<byte> payload)
    {
        if (payload.Length == 0)
        {
            return;
        }

        if (payload.Length == 1)
        {
            throw Protocol("A close frame has a one-byte payload.");
        }

        var code = BinaryPrimitives.ReadUInt16BigEndian(payload);
        if (!WebSocketProtocol.IsValidCloseCode(code))
        {
            throw Protocol($"Close code {code} may not be sent.");
        }

        if (!Utf8.IsValid(payload[2..]))
        {
            throw new WebSocketProtocolException(WebSocketCloseStatus.InvalidPayloadData, "The close reason is not valid UTF-8.");
        }
    }

    private void EnsureCapacity(int frameSize)
    {
        var buffer = _buffer!;
        if (buffer.Length - _start >= frameSize)
        {
            if (_end == buffer.Length && _start > 0)
            {
                Compact(buffer);
            }

            return;
        }

        if (buffer.Length >= frameSize)
        {
            Compact(buffer);
            return;
        }

        var larger = ArrayPool<byte>.Shared.Rent(Math.Max(frameSize, buffer.Length * 2));
        buffer.AsSpan(_start, _end - _start).CopyTo(larger);
        _end -= _start;
        _start = 0;
        ArrayPool<byte>.Shared.Return(buffer);
        _buffer = larger;
    }

    private void Compact(byte[] buffer)
    {
        buffer.AsSpan(_start, _end - _start).CopyTo(buffer);
        _end -= _start;
        _start = 0;
    }

    private void AppendToAssembly(ReadOnlySpan<byte> fragment)
    {
        var needed = _assemblyLength + fragment.Length;
        if (_assembly is null || _assembly.Length < needed)
        {
            var larger = ArrayPool<byte>.Shared.Rent(Math.Max(needed, Math.Max(MinimumBufferSize, (_assembly?.Length ?? 0) * 2)));
            if (_assembly is not null)
            {
                _assembly.AsSpan(0, _assemblyLength).CopyTo(larger);
                ArrayPool<byte>.Shared.Return(_assembly);
            }

            _assembly = larger;
        }

        fragment.CopyTo(_assembly.AsSpan(_assemblyLength));
        _assemblyLength = needed;
    }

    private void ReleaseAssembly()
    {
        _releaseAssembly = false;
        _assemblyLength = 0;
        if (_assembly is not null)
        {
            ArrayPool<byte>.Shared.Return(_assembly);
            _assembly = null;
        }
    }

    /// <summary>Whether the data frame whose header was just validated belongs to a streamed message.</summary>
    private bool IsStreamed(byte opcode, long length)
    {
        if (_streamAboveBytes == 0 || (opcode & 0x08) != 0)
        {
            return false;
        }

        if (opcode == WebSocketProtocol.OpcodeContinuation)
        {
            return _streaming || (_fragmentType == MessageType.Binary && _assemblyLength + length > _streamAboveBytes);
        }

        return opcode == WebSocketProtocol.OpcodeBinary && length > _streamAboveBytes;
    }

    /// <summary>
    /// Takes the header of a frame of a streamed message; its payload is handed out as it arrives. Returns true with the
    /// fragments held while the message was still small (they go on first), or an empty final fragment.
    /// </summary>
    private bool BeginStreamedFrame(byte opcode, bool fin, bool masked, int headerSize, long length, out Frame frame)
    {
        if (opcode != WebSocketProtocol.OpcodeContinuation)
        {
            _inFragmentedMessage = true;
            _fragmentType = MessageType.Binary;
            _assemblyLength = 0;
        }

        _frameKey = masked ? WebSocketMask.ReadKey(_buffer.AsSpan(_start + headerSize - 4, 4)) : 0;
        _frameMasked = masked;
        _frameMaskOffset = 0;
        _frameFin = fin;
        _frameRemaining = length;
        _start += headerSize;

        if (!_streaming)
        {
            _streaming = true;
            _streamOffset = 0;
            if (_assemblyLength > 0)
            {
                // What arrived before the message crossed the threshold: it goes on first, as the first fragment.
                frame = new Frame(FrameKind.Fragment, MessageType.Binary, _assembly.AsMemory(0, _assemblyLength), isFinal: false, offset: 0);
                _streamOffset = _assemblyLength;
                _releaseAssembly = true;
                return true;
            }
        }

        if (length == 0 && fin)
        {
            // An empty last frame still ends the message on the other side.
            frame = new Frame(FrameKind.Fragment, MessageType.Binary, ReadOnlyMemory<byte>.Empty, isFinal: true, offset: _streamOffset);
            EndStream();
            return true;
        }

        frame = default;
        return false;
    }

    /// <summary>Hands out the buffered part of the streamed frame in progress, unmasked in place.</summary>
    private Frame TakeStreamedPiece()
    {
        var count = (int)Math.Min(_frameRemaining, _end - _start);
        var payload = _buffer.AsMemory(_start, count);
        if (_frameMasked)
        {
            // The key continues where the previous piece of this frame stopped.
            WebSocketMask.Apply(payload.Span, BitOperations.RotateRight(_frameKey, 8 * _frameMaskOffset));
            _frameMaskOffset = (_frameMaskOffset + count) & 3;
        }

        _start += count;
        _frameRemaining -= count;
        var offset = _streamOffset;
        _streamOffset += count;
        var final = _frameRemaining == 0 && _frameFin;
        if (final)
        {
            EndStream();
        }

        return new Frame(FrameKind.Fragment, MessageType.Binary, payload, final, offset);
    }

    private void EndStream()
    {
        _streaming = false;
        _inFragmentedMessage = false;
        _streamOffset = 0;
    }

    private static WebSocketProtocolException Protocol(string message) =>
        new(WebSocketCloseStatus.ProtocolError, message);

    private static WebSocketProtocolException InvalidText() =>
        new(WebSocketCloseStatus.InvalidPayloadData, "A text message is not valid UTF-8.");
}
