using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;

namespace Sluice.LoadTest;

/// <summary>
/// The echo backend of the proxy runs: one thread reads every connection through <see cref="Epoll"/> and echoes each
/// read's frames back in one send, unmasked and otherwise as they came (fragments stay fragments, pings get pongs).
/// On two cores the backend shares its core with the load generator; the ASP.NET Core echo loop (<c>echo</c>) costs
/// a thread-pool work item, an async receive and a send per message, so it, not the proxy, set the pace of the
/// runs. This one costs about one receive and one send per batch, so the proxy under test is the bottleneck and
/// its CPU per round trip is measured at saturation. permessage-deflate runs keep the ASP.NET Core backend.
/// Sends block (10 s at most): a peer that stops reading stalls the others meanwhile, which a proxy under load never
/// does; a benchmark backend can afford that, a server could not.
/// </summary>
internal static class RawEchoServer
{
    private static readonly byte[] AcceptGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"u8.ToArray();

    public static int Run(Arguments args)
    {
        using var listener = new Socket(SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, args.Int("port")));
        listener.Listen(4096);
        using var epoll = new Epoll(1024);
        var connections = new ConcurrentDictionary<int, EchoConnection>();
        var echo = new Thread(() => EchoLoop(epoll, connections)) { IsBackground = true, Name = "echo" };
        echo.Start();

        var next = 0;
        while (true)
        {
            var socket = listener.Accept();
            // Handshakes run on their own threads, so that a slow or silent client never holds up the next one.
            var token = next++;
            ThreadPool.UnsafeQueueUserWorkItem(_ =>
            {
                if (EchoConnection.Accept(socket) is { } connection)
                {
                    connections[token] = connection;
                    epoll.Add(socket.Handle, token);
                }
            }, null);
        }
    }

    private static void EchoLoop(Epoll epoll, ConcurrentDictionary<int, EchoConnection> connections)
    {
        Span<int> ready = stackalloc int[1024];
        var output = new byte[64 * 1024];
        while (true)
        {
            var count = epoll.Wait(ready, -1);
            for (var i = 0; i < count; i++)
            {
                if (connections.TryGetValue(ready[i], out var connection) && !connection.Echo(ref output))
                {
                    // Closing the descriptor also takes it out of the epoll set.
                    connections.TryRemove(ready[i], out _);
                    connection.Dispose();
                }
            }
        }
    }

    private sealed class EchoConnection(Socket socket, byte[] buffer, int end) : IDisposable
    {
        private byte[] _buffer = buffer;
        private int _end = end;

        /// <summary>Reads the upgrade request and answers 101; null (and the socket closed) when it is not one.</summary>
        public static EchoConnection? Accept(Socket socket)
        {
            try
            {
                socket.NoDelay = true;
                socket.ReceiveTimeout = 10_000;
                socket.SendTimeout = 10_000;
                var buffer = new byte[4096];
                var end = 0;
                int headerEnd;
                while ((headerEnd = buffer.AsSpan(0, end).IndexOf("\r\n\r\n"u8)) < 0)
                {
                    var read = end < buffer.Length ? socket.Receive(buffer.AsSpan(end)) : 0;
                    if (read <= 0)
                    {
                        socket.Dispose();
                        return null;
                    }

                    end += read;
                }

                var key = FindHeader(Encoding.ASCII.GetString(buffer, 0, headerEnd), "Sec-WebSocket-Key");
                if (key is null)
                {
                    socket.Send("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"u8);
                    socket.Dispose();
                    return null;
                }

#pragma warning disable CA5350 // RFC 6455 4.2.2 defines the accept value with SHA-1; it is not used for security.
                var accept = Convert.ToBase64String(SHA1.HashData([.. Encoding.ASCII.GetBytes(key), .. AcceptGuid]));
#pragma warning restore CA5350
                socket.Send(Encoding.ASCII.GetBytes(
                    $"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"));
                socket.ReceiveTimeout = 0;
                var rest = end - (headerEnd + 4);
                buffer.AsSpan(headerEnd + 4, rest).CopyTo(buffer);
                var connection = new EchoConnection(socket, buffer, rest);
                // Frames the client sent right behind its request were read with it, into the handshake's buffer: they are
                // echoed now, as epoll will not report them again.
                var output = Array.Empty<byte>();
                if (rest > 0 && !connection.EchoBuffered(ref output))
                {
                    connection.Dispose();
                    return null;
                }

                return connection;
            }
            catch (SocketException)
            {
                socket.Dispose();
                return null;
            }
        }

        /// <summary>One read (epoll said there is something), then every whole frame echoed in one send; false when done.</summary>
        public bool Echo(ref byte[] output)
        {
            try
            {
                if (_end == _buffer.Length)
                {
                    Array.Resize(ref _buffer, _buffer.Length * 2);
                }

                var read = socket.Receive(_buffer.AsSpan(_end), SocketFlags.None, out var error);
                if (read <= 0 || error != SocketError.Success)
                {
                    return false;
                }

                _end += read;
                return EchoBuffered(ref output);
            }
            catch (SocketException)
            {
                return false;
            }
        }

        private bool EchoBuffered(ref byte[] output)
        {
            var (consumed, written, open) = EchoFrames(_buffer.AsSpan(0, _end), ref output);
            _buffer.AsSpan(consumed, _end - consumed).CopyTo(_buffer);
            _end -= consumed;
            for (var sent = 0; sent < written;)
            {
                sent += socket.Send(output.AsSpan(sent, written - sent));
            }

            return open;
        }

        public void Dispose() => socket.Dispose();

        /// <summary>Turns every whole (masked) client frame in <paramref name="input"/> into its unmasked echo.</summary>
        private static (int Consumed, int Written, bool Open) EchoFrames(Span<byte> input, ref byte[] output)
        {
            var consumed = 0;
            var written = 0;
            while (input.Length - consumed >= 2)
            {
                var frame = input[consumed..];
                var opcode = frame[0] & 0x0F;
                var masked = (frame[1] & 0x80) != 0;
                var (header, length) = RawWebSocket.ReadLength(frame);
                if (length < 0)
                {
                    // A 64-bit length with its top bit set (RFC 6455 5.2 forbids it): the connection ends.
                    return (consumed, written, false);
                }

                var keyAt = header;
                header += masked ? 4 : 0;
                if (frame.Length - header < length)
                {
                    break;
                }

                var payload = frame.Slice(header, (int)length);
                if (masked)
                {
                    Unmask(payload, frame.Slice(keyAt, 4));
                }

                consumed += header + (int)length;
                if (opcode == 0xA)
                {
                    continue;
                }

                if (output.Length - written < payload.Length + 10)
                {
                    Array.Resize(ref output, Math.Max(output.Length * 2, written + payload.Length + 10));
                }

                // A ping's echo is its pong; anything else goes back as it came (FIN bit and opcode), unmasked.
                output[written] = opcode == 0x9 ? (byte)0x8A : frame[0];
                var outHeader = 2;
                if (payload.Length < 126)
                {
                    output[written + 1] = (byte)payload.Length;
                }
                else if (payload.Length <= ushort.MaxValue)
                {
                    output[written + 1] = 126;
                    BinaryPrimitives.WriteUInt16BigEndian(output.AsSpan(written + 2), (ushort)payload.Length);
                    outHeader = 4;
                }
                else
                {
                    output[written + 1] = 127;
                    BinaryPrimitives.WriteUInt64BigEndian(output.AsSpan(written + 2), (ulong)payload.Length);
                    outHeader = 10;
                }

                payload.CopyTo(output.AsSpan(written + outHeader));
                written += outHeader + payload.Length;
                if (opcode == 0x8)
                {
                    // The close handshake: the close echoed, then the connection ends.
                    return (consumed, written, false);
                }
            }

            return (consumed, written, true);
        }

        private static void Unmask(Span<byte> payload, ReadOnlySpan<byte> key)
        {
            var key32 = BinaryPrimitives.ReadUInt32LittleEndian(key);
            var key64 = ((ulong)key32 << 32) | key32;
            var i = 0;
            for (; i + 8 <= payload.Length; i += 8)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(payload[i..], BinaryPrimitives.ReadUInt64LittleEndian(payload[i..]) ^ key64);
            }

            for (; i < payload.Length; i++)
            {
                payload[i] ^= key[i & 3];
            }
        }

        private static string? FindHeader(string request, string name)
        {
            foreach (var line in request.Split("\r\n"))
            {
                var colon = line.IndexOf(':');
                if (colon > 0 && line.AsSpan(0, colon).Trim().Equals(name, StringComparison.OrdinalIgnoreCase))
                {
                    return line[(colon + 1)..].Trim();
                }
            }

            return null;
        }
    }
}
