using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;

namespace Sluice.LoadTest;

/// <summary>
/// A minimal blocking WebSocket client for the echo and fan-out loads, so that one thread can serve every connection: the
/// handshake, masked frames out, and the server's unmasked frames parsed in place from a buffer of its own. It reads
/// only when <see cref="Epoll"/> says there is something to read, so a read never blocks.
/// </summary>
internal sealed class RawWebSocket : IDisposable
{
    private const byte Text = 0x1;
    private const byte Pong = 0xA;

    private readonly Socket _socket;
    private byte[] _buffer = new byte[2048];
    private int _start;
    private int _end;

    // A message sent in fragments (SignalR sends a pipe read that spans memory blocks so) is gathered here.
    private byte[]? _fragments;
    private int _fragmentsLength;
    private int _fragmentsOpcode;

    private RawWebSocket(Socket socket) => _socket = socket;

    /// <summary>The socket's descriptor, for <see cref="Epoll.Add"/>.</summary>
    public nint Handle => _socket.Handle;

    /// <summary>The server closed the connection, or it broke.</summary>
    public bool Closed { get; private set; }

    /// <summary>Connects and upgrades; throws unless the server answers 101. Bytes after the response stay buffered.</summary>
    public static RawWebSocket Connect(Uri url, (string Name, string Value)? header = null)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        var client = new RawWebSocket(socket);
        try
        {
            // A server that never answers fails the run rather than hanging it; reads after the handshake only
            // happen when epoll reports data, so the timeout is cleared then.
            socket.ReceiveTimeout = 10_000;
            // A send that cannot go on for that long (a server that stopped reading) fails its connection, not the run.
            socket.SendTimeout = 10_000;
            socket.Connect(url.Host, url.Port);
            // The key's accept value is not checked: every server here is a known peer, and the load measures them.
            socket.Send(Encoding.ASCII.GetBytes(
                $"GET {url.PathAndQuery} HTTP/1.1\r\nHost: {url.Authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
                (header is { } h ? $"{h.Name}: {h.Value}\r\n" : "") + "\r\n"));
            int headerEnd;
            while ((headerEnd = client._buffer.AsSpan(0, client._end).IndexOf("\r\n\r\n"u8)) < 0)
            {
                if (!client.Fill())
                {
                    throw new IOException($"{url}: the connection closed during the handshake");
                }
            }

            if (!client._buffer.AsSpan(0, headerEnd).StartsWith("HTTP/1.1 101"u8))
            {
                throw new IOException($"{url}: {Encoding.ASCII.GetString(client._buffer, 0, headerEnd).Split('\r')[0]}");
            }

            client._start = headerEnd + 4;
            return client;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    public void SendText(ReadOnlySpan<byte> payload) => Send(Text, payload);

    /// <summary>Called once the socket joins the epoll loop, where a read never waits.</summary>
    public void ClearReceiveTimeout() => _socket.ReceiveTimeout = 0;

    /// <summary>Reads what the socket holds (one receive); false when the connection ended.</summary>
    public bool Fill()
    {
        if (_start > 0)
        {
            _buffer.AsSpan(_start, _end - _start).CopyTo(_buffer);
            _end -= _start;
            _start = 0;
        }

        if (_end == _buffer.Length)
        {
            Array.Resize(ref _buffer, _buffer.Length * 2);
        }

        var read = _socket.Receive(_buffer.AsSpan(_end), SocketFlags.None, out var error);
        if (read <= 0 || error != SocketError.Success)
        {
            Closed = true;
            return false;
        }

        _end += read;
        return true;
    }

    /// <summary>
    /// Takes the next whole message from the buffer: its opcode and payload (valid until the next <see cref="Fill"/>);
    /// fragments are gathered until the last one. Control frames come out as they arrive: pings are answered here, and
    /// a close frame marks the connection closed.
    /// </summary>
    public bool TryTakeMessage(out int opcode, out ReadOnlySpan<byte> payload)
    {
        while (TryTakeFrame(out var fin, out opcode, out payload))
        {
            if (opcode >= 0x8 || (fin && opcode != 0 && _fragments is null))
            {
                return true;
            }

            if (opcode != 0)
            {
                _fragmentsOpcode = opcode;
                _fragmentsLength = 0;
            }

            _fragments ??= new byte[Math.Max(4096, payload.Length)];
            if (_fragmentsLength + payload.Length > _fragments.Length)
            {
                Array.Resize(ref _fragments, Math.Max(_fragments.Length * 2, _fragmentsLength + payload.Length));
            }

            payload.CopyTo(_fragments.AsSpan(_fragmentsLength));
            _fragmentsLength += payload.Length;
            if (fin)
            {
                opcode = _fragmentsOpcode;
                payload = _fragments.AsSpan(0, _fragmentsLength);
                _fragments = null;
                return true;
            }
        }

        return false;
    }

    private bool TryTakeFrame(out bool fin, out int opcode, out ReadOnlySpan<byte> payload)
    {
        var span = _buffer.AsSpan(_start, _end - _start);
        fin = false;
        opcode = 0;
        payload = default;
        if (span.Length < 2)
        {
            return false;
        }

        if ((span[1] & 0x80) != 0)
        {
            throw new IOException("the server masked a frame (RFC 6455 5.1)");
        }

        var (header, length) = ReadLength(span);
        if (span.Length - header < length)
        {
            return false;
        }

        fin = (span[0] & 0x80) != 0;
        opcode = span[0] & 0x0F;
        payload = span.Slice(header, (int)length);
        _start += header + (int)length;
        if (opcode == 0x9)
        {
            Send(Pong, payload);
        }
        else if (opcode == 0x8)
        {
            Closed = true;
        }

        return true;
    }

    /// <summary>
    /// A frame's header size without its mask key, and its payload length (RFC 6455 5.2); long.MaxValue while the
    /// extended length has not all arrived. <paramref name="frame"/> holds at least the first two bytes.
    /// </summary>
    internal static (int Header, long Length) ReadLength(ReadOnlySpan<byte> frame) => (frame[1] & 0x7F) switch
    {
        126 => (4, frame.Length < 4 ? long.MaxValue : BinaryPrimitives.ReadUInt16BigEndian(frame[2..])),
        127 => (10, frame.Length < 10 ? long.MaxValue : (long)BinaryPrimitives.ReadUInt64BigEndian(frame[2..])),
        var length => (2, length),
    };

    /// <summary>Blocks until a whole data frame arrives (handshakes only, before the socket joins the epoll loop).</summary>
    public byte[] ReceiveFrame()
    {
        while (true)
        {
            while (TryTakeMessage(out var opcode, out var payload))
            {
                if (opcode is 0x1 or 0x2)
                {
                    return payload.ToArray();
                }
            }

            if (Closed || !Fill())
            {
                throw new IOException("the connection closed during the handshake");
            }
        }
    }

    public void Dispose() => _socket.Dispose();

    private void Send(byte opcode, ReadOnlySpan<byte> payload)
    {
        // A client masks every frame (RFC 6455 5.3); the key need not be unpredictable for a load generator.
        var header = payload.Length < 126 ? 6 : payload.Length <= ushort.MaxValue ? 8 : 14;
        var frame = new byte[header + payload.Length];
        frame[0] = (byte)(0x80 | opcode);
        if (payload.Length < 126)
        {
            frame[1] = (byte)(0x80 | payload.Length);
        }
        else if (payload.Length <= ushort.MaxValue)
        {
            frame[1] = 0x80 | 126;
            BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(2), (ushort)payload.Length);
        }
        else
        {
            frame[1] = 0x80 | 127;
            BinaryPrimitives.WriteUInt64BigEndian(frame.AsSpan(2), (ulong)payload.Length);
        }

        Span<byte> mask = [0x5a, 0x17, 0xc3, 0x3e];
        mask.CopyTo(frame.AsSpan(header - 4));
        for (var i = 0; i < payload.Length; i++)
        {
            frame[header + i] = (byte)(payload[i] ^ mask[i & 3]);
        }

        var sent = 0;
        while (sent < frame.Length)
        {
            sent += _socket.Send(frame.AsSpan(sent));
        }
    }
}
