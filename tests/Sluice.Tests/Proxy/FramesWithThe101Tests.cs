using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Sluice.Protocol;
using Sluice.Tests.Infrastructure;

namespace Sluice.Tests.Proxy;

/// <summary>
/// A backend that sends its first frames in the same TCP write as its 101: the proxy's client receives them whole and
/// in order, before and after the end of what the handshake's read buffer held, and the connection then carries
/// messages both ways on the backend's socket.
/// </summary>
public class FramesWithThe101Tests
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task FramesInTheWriteOfThe101_ReachTheClient_ThenTheConnectionCarriesMessagesBothWays()
    {
        // 10,000 bytes of binary payload: more than the handshake's 4 KiB read buffer, so the frame is split between
        // what the handshake read and what is still on the socket.
        var big = new byte[10_000];
        Random.Shared.NextBytes(big);
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var backend = ServeAsync(listener, [.. Frame(0x1, "first"u8), .. Frame(0x2, big), .. Frame(0x1, "third"u8)]);
        await using var proxy = await TestServer.StartAsync(app => app.MapWebSocketProxy("/p", $"ws://127.0.0.1:{((IPEndPoint)listener.LocalEndpoint).Port}/"));
        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p"));

        Assert.Equal("first", await client.ReceiveTextAsync(s_wait));
        var binary = await client.ReceiveMessageAsync(s_wait);
        Assert.Equal(WebSocketMessageType.Binary, binary.Type);
        Assert.Equal(big, binary.Payload);
        Assert.Equal("third", await client.ReceiveTextAsync(s_wait));

        await client.SendTextAsync("from the client");
        Assert.Equal("from the client", await backend.WaitAsync(s_wait));
    }

    private static byte[] Frame(int opcode, ReadOnlySpan<byte> payload)
    {
        var header = payload.Length < 126 ? new byte[] { (byte)(0x80 | opcode), (byte)payload.Length }
            : new byte[] { (byte)(0x80 | opcode), 126, (byte)(payload.Length >> 8), (byte)payload.Length };
        return [.. header, .. payload];
    }

    /// <summary>Accepts one connection, answers its handshake and <paramref name="frames"/> in one write, returns the text of the first frame it receives.</summary>
    private static async Task<string> ServeAsync(TcpListener listener, byte[] frames)
    {
        using var socket = await listener.AcceptSocketAsync();
        using var cts = new CancellationTokenSource(s_wait);
        var received = new List<byte>();
        var buffer = new byte[4096];
        int headEnd;
        while ((headEnd = IndexOfHeadEnd(received)) < 0)
        {
            var read = await socket.ReceiveAsync(buffer, cts.Token);
            Assert.NotEqual(0, read);
            received.AddRange(buffer.AsSpan(0, read));
        }

        var head = Encoding.Latin1.GetString([.. received.Take(headEnd)]);
        var key = head.Split("\r\n").First(l => l.StartsWith("Sec-WebSocket-Key:", StringComparison.OrdinalIgnoreCase))[18..].Trim();
        byte[] answer = [.. Encoding.Latin1.GetBytes($"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {ServerHandshake.ComputeAccept(key)}\r\n\r\n"), .. frames];
        await socket.SendAsync(answer, cts.Token);

        // One masked text frame from the proxy, shorter than 126 bytes.
        received.RemoveRange(0, headEnd);
        while (received.Count < 2 || received.Count < 6 + (received[1] & 0x7F))
        {
            var read = await socket.ReceiveAsync(buffer, cts.Token);
            Assert.NotEqual(0, read);
            received.AddRange(buffer.AsSpan(0, read));
        }

        Assert.Equal(0x81, received[0]);
        var length = received[1] & 0x7F;
        var payload = received.Skip(6).Take(length).Select((b, i) => (byte)(b ^ received[2 + (i % 4)])).ToArray();
        return Encoding.UTF8.GetString(payload);
    }

    private static int IndexOfHeadEnd(List<byte> bytes)
    {
        for (var i = 3; i < bytes.Count; i++)
        {
            if (bytes[i - 3] == '\r' && bytes[i - 2] == '\n' && bytes[i - 1] == '\r' && bytes[i] == '\n')
            {
                return i + 1;
            }
        }

        return -1;
    }
}
