using System.Buffers.Binary;
using System.Net.WebSockets;
using System.Text;

namespace Sluice.Protocol;

/// <summary>What a leg received: a whole data message, a ping or pong, or the peer's close frame.</summary>
internal readonly struct LegFrame
{
    private LegFrame(bool isClose, MessageType type, ReadOnlyMemory<byte> payload, WebSocketCloseStatus? closeStatus, string? closeReason, bool isFragment = false, bool isFinal = true, long offset = 0)
    {
        IsFragment = isFragment;
        IsFinal = isFinal;
        Offset = offset;
        IsClose = isClose;
        Type = type;
        Payload = payload;
        CloseStatus = closeStatus;
        CloseReason = closeReason;
    }

    public bool IsClose { get; }

    /// <summary>A ping or a pong (<see cref="Type"/>); the engine answers pings, through the chain of control frames if any.</summary>
    public bool IsPingOrPong => Type >= MessageType.Ping;

    public MessageType Type { get; }

    /// <summary>Valid until the next receive call on the leg.</summary>
    public ReadOnlyMemory<byte> Payload { get; }

    /// <summary>The peer's close code; null for a close frame without one (1005).</summary>
    public WebSocketCloseStatus? CloseStatus { get; }

    public string? CloseReason { get; }

    public static LegFrame Message(MessageType type, ReadOnlyMemory<byte> payload) => new(false, type, payload, null, null);

    /// <summary>A piece of a streamed message: <paramref name="offset"/> bytes of it came before.</summary>
    public static LegFrame Fragment(MessageType type, ReadOnlyMemory<byte> payload, long offset, bool isFinal) =>
        new(false, type, payload, null, null, isFragment: true, isFinal, offset);

    /// <summary>Whether this is a piece of a streamed message rather than a whole one.</summary>
    public bool IsFragment { get; }

    /// <summary>Whether this ends its message: always for a whole message.</summary>
    public bool IsFinal { get; }

    /// <summary>For a fragment, the bytes of its message handed out before it.</summary>
    public long Offset { get; }

    public static LegFrame Close(WebSocketCloseStatus? status, string? reason) => new(true, default, default, status, reason);
}

/// <summary>
/// One WebSocket of a connection: the client's, or in proxy mode also the backend's. One receive loop reads
/// a leg; any thread may send on it. Pings and pongs are handed to the engine, which answers pings (a leg run by
/// System.Net.WebSockets handles them itself and hands out neither).
/// </summary>
internal abstract class WebSocketLeg : IDisposable
{
    /// <summary>Takes the next buffered message or close frame; false when more bytes must be read.</summary>
    public abstract bool TryReceive(out LegFrame frame);

    /// <summary>Reads more from the peer; false when the peer closed the transport.</summary>
    public abstract ValueTask<bool> ReceiveAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Waits, holding no buffer, until the peer has sent something, when nothing is buffered; a
    /// <see cref="ReceiveAsync"/> after it then rarely waits. An idle connection's pending receive is this wait, which
    /// completes without any state of the leg's own.
    /// </summary>
    public virtual ValueTask<int> WaitForDataAsync() => default;

    /// <summary>Queues a data message; it is written by the next <see cref="FlushAsync"/>. False once closed.</summary>
    public abstract bool Send(MessageType type, ReadOnlySpan<byte> payload);

    /// <summary>
    /// Queues a message already framed as a server sends it (a topic frame shared by many subscribers). A leg
    /// that cannot send those bytes as they are (compression, or a client leg that must mask) sends the payload.
    /// </summary>
    public virtual bool SendFramed(byte[] frame, int headerLength, MessageType type) =>
        Send(type, frame.AsSpan(headerLength));

    /// <summary>Queues a pong, answering a ping. False once closed, or if the leg answers pings itself.</summary>
    public abstract bool SendPong(ReadOnlySpan<byte> payload);

    /// <summary>
    /// Queues one fragment of a streamed message: <paramref name="first"/> opens it (with <paramref name="type"/>), and
    /// <paramref name="final"/> ends it. Until it ends, other data messages queued on the leg wait behind it, so that
    /// nothing interleaves with its fragments. False once closed.
    /// </summary>
    public abstract bool SendFragment(MessageType type, bool first, bool final, ReadOnlySpan<byte> payload);

    /// <summary>Queues a keep-alive ping. False if the leg cannot send one (it keeps itself alive).</summary>
    public abstract bool SendPing();

    /// <summary>Queues a close frame; nothing is sent after it. False if one was already queued.</summary>
    public abstract bool SendClose(WebSocketCloseStatus? status, string? reason);

    /// <summary>Writes what has been queued; see <see cref="FrameWriter.FlushAsync"/>.</summary>
    public abstract ValueTask FlushAsync(CancellationToken cancellationToken = default);

    public abstract bool HasPendingWrites { get; }

    public abstract bool CloseSent { get; }

    /// <summary>Gets the timestamp of the leg's <see cref="TimeProvider"/> when the peer last sent anything.</summary>
    public abstract long LastReceiveTicks { get; }

    /// <summary>Whether the leg answers keep-alive itself (System.Net.WebSockets) rather than through <see cref="SendPing"/>.</summary>
    public virtual bool HandlesKeepAlive => false;

    /// <summary>After a protocol failure, reads and discards until the peer's close frame, its end of the stream, or the token.</summary>
    public abstract Task DrainAsync(CancellationToken cancellationToken);

    /// <summary>Tears the transport down at once.</summary>
    public abstract void Abort();

    public abstract void Dispose();

    internal static LegFrame ParseClose(ReadOnlySpan<byte> payload) =>
        payload.Length < 2
            ? LegFrame.Close(null, null)
            : LegFrame.Close((WebSocketCloseStatus)BinaryPrimitives.ReadUInt16BigEndian(payload), payload.Length > 2 ? Encoding.UTF8.GetString(payload[2..]) : null);
}

/// <summary>A leg framed by Sluice itself (<see cref="FrameReader"/>, <see cref="FrameWriter"/>) over a stream.</summary>
internal sealed class FramedLeg : WebSocketLeg
{
    private readonly Stream _stream;
    private readonly FrameReader _reader;
    private readonly FrameWriter _writer;
    private readonly Action _abort;
    private readonly bool _ownsStream;
    private readonly bool _isServer;

    /// <param name="stream">The upgraded stream.</param>
    /// <param name="isServer">True for the client's leg (Sluice is the server); false for a backend leg.</param>
    /// <param name="maxMessageBytes">The message size limit.</param>
    /// <param name="abort">Tears the transport down.</param>
    /// <param name="ownsStream">Whether disposing the leg disposes the stream (a backend socket) or not (Kestrel's).</param>
    /// <param name="initialData">Bytes read past the handshake.</param>
    /// <param name="time">The clock of <see cref="LastReceiveTicks"/>, the connection's.</param>
    /// <param name="streamAboveBytes">Binary messages longer than this are received as fragments; 0 never streams.</param>
    /// <param name="streamMaxBytes">The largest streamed message.</param>
    public FramedLeg(Stream stream, bool isServer, long maxMessageBytes, Action abort, bool ownsStream, ReadOnlySpan<byte> initialData = default, TimeProvider? time = null, long streamAboveBytes = 0, long streamMaxBytes = 0)
    {
        _stream = stream;
        _reader = new FrameReader(stream, expectMasked: isServer, maxMessageBytes, initialData, time, streamAboveBytes, streamMaxBytes);
        _writer = new FrameWriter(stream, mask: !isServer);
        _abort = abort;
        _ownsStream = ownsStream;
        _isServer = isServer;
    }

    public override bool HasPendingWrites => _writer.HasPending;

    public override bool CloseSent => _writer.CloseSent;

    public override long LastReceiveTicks => _reader.LastReceiveTicks;

    public override bool TryReceive(out LegFrame frame)
    {
        while (_reader.TryRead(out var raw))
        {
            switch (raw.Kind)
            {
                case FrameKind.Message:
                    frame = LegFrame.Message(raw.MessageType, raw.Payload);
                    return true;
                case FrameKind.Fragment:
                    frame = LegFrame.Fragment(raw.MessageType, raw.Payload, raw.Offset, raw.IsFinal);
                    return true;
                case FrameKind.Ping:
                    // The engine answers (RFC 6455 5.5.2), unless an interceptor that opted in to pings drops it.
                    frame = LegFrame.Message(MessageType.Ping, raw.Payload);
                    return true;
                case FrameKind.Pong:
                    frame = LegFrame.Message(MessageType.Pong, raw.Payload);
                    return true;
                case FrameKind.Close:
                    frame = ParseClose(raw.Payload.Span);
                    return true;
            }
        }

        frame = default;
        return false;
    }

    public override ValueTask<bool> ReceiveAsync(CancellationToken cancellationToken) => _reader.FillAsync(cancellationToken);

    public override ValueTask<int> WaitForDataAsync() => _reader.WaitForDataAsync();

    public override bool Send(MessageType type, ReadOnlySpan<byte> payload) => _writer.Write(type, payload);

    public override bool SendFragment(MessageType type, bool first, bool final, ReadOnlySpan<byte> payload) =>
        _writer.WriteFragment(type, first, final, payload);

    public override bool SendFramed(byte[] frame, int headerLength, MessageType type) =>
        _isServer ? _writer.WriteFramed(frame) : _writer.Write(type, frame.AsSpan(headerLength));

    public override bool SendPing() => _writer.WritePing(default);

    public override bool SendPong(ReadOnlySpan<byte> payload) => _writer.WritePong(payload);

    public override bool SendClose(WebSocketCloseStatus? status, string? reason) => _writer.WriteClose(status, reason);

    public override ValueTask FlushAsync(CancellationToken cancellationToken = default) => _writer.FlushAsync(cancellationToken);

    public override async Task DrainAsync(CancellationToken cancellationToken)
    {
        if (_reader.CanFindClose)
        {
            // Frame boundaries are intact: stop at the peer's close frame, so that the connection ends at once (a
            // client waits for the server to close TCP first, RFC 6455 7.1.1) rather than when the close timer fires.
            while (!_reader.TryReadClose())
            {
                if (!await _reader.FillAsync(cancellationToken))
                {
                    return;
                }
            }

            return;
        }

        var buffer = new byte[256];
        while (await _stream.ReadAsync(buffer, cancellationToken) > 0)
        {
        }
    }

    public override void Abort() => _abort();

    public override void Dispose()
    {
        _reader.Dispose();
        _writer.Dispose();
        if (_ownsStream)
        {
            _stream.Dispose();
        }
    }
}
