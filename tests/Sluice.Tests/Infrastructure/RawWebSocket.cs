using System.Buffers.Binary;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;

namespace Sluice.Tests.Infrastructure;

/// <summary>
/// A WebSocket client that writes frames byte by byte as the test says, valid or not: fragments, interleaved
/// control frames, reserved bits, unmasked frames, bad close codes. It reads the server's frames raw too.
/// </summary>
public sealed class RawWebSocket : IDisposable
{
    private readonly TcpClient _tcp;
    private readonly NetworkStream _stream;
    private readonly List<byte> _buffer = [];

    private RawWebSocket(TcpClient tcp)
    {
        _tcp = tcp;
        _stream = tcp.GetStream();
    }

    public string ResponseHead { get; private set; } = string.Empty;

    public int StatusCode => int.Parse(ResponseHead.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Sends a handshake (or any request head) and returns the connection with the response head read.</summary>
    /// <param name="sentWithHead">Bytes written in the same write as the head, before the response (frames of a client that does not wait for the 101).</param>
    public static async Task<RawWebSocket> ConnectAsync(Uri uri, string? requestHead = null, string extraHeaders = "", byte[]? sentWithHead = null)
    {
        var tcp = new TcpClient { NoDelay = true };
        await tcp.ConnectAsync(uri.Host, uri.Port);
        var key = Convert.ToBase64String(RandomNumberGenerator.GetBytes(16));
        requestHead ??= $"GET {uri.PathAndQuery} HTTP/1.1\r\nHost: {uri.Authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
            $"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extraHeaders}\r\n";
        var stream = tcp.GetStream();
        byte[] request = [.. Encoding.ASCII.GetBytes(requestHead), .. sentWithHead ?? []];
        await stream.WriteAsync(request);
        var socket = new RawWebSocket(tcp);
        socket.ResponseHead = await socket.ReadHeadAsync();
        return socket;
    }

    public Task SendFrameAsync(byte opcode, ReadOnlySpan<byte> payload, bool fin = true, bool mask = true, byte rsv = 0) =>
        SendRawAsync(Frame(opcode, payload, fin, mask, rsv));

    public Task SendTextAsync(string text, bool fin = true) => SendFrameAsync(0x1, Encoding.UTF8.GetBytes(text), fin);

    public Task SendCloseAsync(ushort? code, string reason = "")
    {
        if (code is null)
        {
            return SendFrameAsync(0x8, []);
        }

        var payload = new byte[2 + Encoding.UTF8.GetByteCount(reason)];
        BinaryPrimitives.WriteUInt16BigEndian(payload, code.Value);
        Encoding.UTF8.GetBytes(reason, payload.AsSpan(2));
        return SendFrameAsync(0x8, payload);
    }

    public async Task SendRawAsync(byte[] bytes, int chop = 0)
    {
        if (chop <= 0)
        {
            await _stream.WriteAsync(bytes);
            return;
        }

        for (var i = 0; i < bytes.Length; i += chop)
        {
            await _stream.WriteAsync(bytes.AsMemory(i, Math.Min(chop, bytes.Length - i)));
            await _stream.FlushAsync();
        }
    }

    public static byte[] Frame(byte opcode, ReadOnlySpan<byte> payload, bool fin = true, bool mask = true, byte rsv = 0)
    {
        var header = new List<byte> { (byte)((fin ? 0x80 : 0) | (rsv << 4) | opcode) };
        var maskBit = mask ? (byte)0x80 : (byte)0;
        if (payload.Length < 126)
        {
            header.Add((byte)(maskBit | payload.Length));
        }
        else if (payload.Length <= ushort.MaxValue)
        {
            header.Add((byte)(maskBit | 126));
            header.Add((byte)(payload.Length >> 8));
            header.Add((byte)payload.Length);
        }
        else
        {
            header.Add((byte)(maskBit | 127));
            var length = new byte[8];
            BinaryPrimitives.WriteUInt64BigEndian(length, (ulong)payload.Length);
            header.AddRange(length);
        }

        var body = payload.ToArray();
        if (mask)
        {
            var key = RandomNumberGenerator.GetBytes(4);
            header.AddRange(key);
            for (var i = 0; i < body.Length; i++)
            {
                body[i] ^= key[i % 4];
            }
        }

        return [.. header, .. body];
    }

    /// <summary>Reads the next frame the server sent; null when the server closed the TCP connection.</summary>
    public async Task<ServerFrame?> ReadFrameAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(10));
        if (!await FillAsync(2, cts.Token))
        {
            return null;
        }

        var b0 = _buffer[0];
        var b1 = _buffer[1];
        var length = (long)(b1 & 0x7F);
        var header = 2;
        if (length == 126)
        {
            header = 4;
            await FillAsync(4, cts.Token);
            length = (_buffer[2] << 8) | _buffer[3];
        }
        else if (length == 127)
        {
            header = 10;
            await FillAsync(10, cts.Token);
            length = (long)BinaryPrimitives.ReadUInt64BigEndian(_buffer.GetRange(2, 8).ToArray());
        }

        if ((b1 & 0x80) != 0)
        {
            throw new InvalidOperationException("The server sent a masked frame.");
        }

        await FillAsync(header + (int)length, cts.Token);
        var payload = _buffer.GetRange(header, (int)length).ToArray();
        _buffer.RemoveRange(0, header + (int)length);
        return new ServerFrame((b0 & 0x80) != 0, (byte)(b0 & 0x0F), payload);
    }

    /// <summary>Reads frames until a close frame and returns its code (null for an empty close), or throws.</summary>
    public async Task<(ushort? Code, string Reason)> ReadCloseAsync(TimeSpan? timeout = null)
    {
        while (true)
        {
            var frame = await ReadFrameAsync(timeout) ?? throw new InvalidOperationException("The server closed TCP without a close frame.");
            if (frame.Opcode == 0x8)
            {
                return frame.Payload.Length < 2
                    ? (null, string.Empty)
                    : (BinaryPrimitives.ReadUInt16BigEndian(frame.Payload), Encoding.UTF8.GetString(frame.Payload, 2, frame.Payload.Length - 2));
            }
        }
    }

    /// <summary>Waits until the server closes the TCP connection; false if it does not within the timeout.</summary>
    public async Task<bool> WaitForTcpCloseAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            var scratch = new byte[4096];
            while (await _stream.ReadAsync(scratch, cts.Token) > 0)
            {
            }

            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
        catch (IOException)
        {
            return true;
        }
    }

    public void Dispose() => _tcp.Dispose();

    private async Task<string> ReadHeadAsync()
    {
        var head = new StringBuilder();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var one = new byte[1];
        while (!head.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal))
        {
            if (await _stream.ReadAsync(one, cts.Token) == 0)
            {
                break;
            }

            head.Append((char)one[0]);
        }

        return head.ToString();
    }

    private async Task<bool> FillAsync(int count, CancellationToken cancellationToken)
    {
        var scratch = new byte[65536];
        while (_buffer.Count < count)
        {
            var read = await _stream.ReadAsync(scratch, cancellationToken);
            if (read == 0)
            {
                return false;
            }

            _buffer.AddRange(scratch.AsSpan(0, read).ToArray());
        }

        return true;
    }

    public sealed record ServerFrame(bool Fin, byte Opcode, byte[] Payload)
    {
        public string Text => Encoding.UTF8.GetString(Payload);
    }
}
