using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Sluice.Tests.Infrastructure;

namespace Sluice.Tests.Protocol;

/// <summary>
/// RFC 7692 section 8: data that does not inflate fails the connection, with a close frame (1007, as Node's ws sends)
/// rather than a TCP reset, on a leg from a client and on a leg to a backend.
/// </summary>
public class DeflateFailureTests
{
    // Not a DEFLATE stream: block type 3 is reserved, so every inflater rejects it at the first byte.
    private static readonly byte[] s_garbage = [0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x01, 0x02, 0x03];

    [Fact]
    public async Task ClientLeg_GarbageCompressedFrame_ClosesWith1007()
    {
        await using var server = await TestServer.StartAsync(app => app.MapWebSocket("/echo", ws =>
        {
            ws.ConfigureOptions(o => o.EnableCompression = true);
            ws.OnMessage((m, _) => m);
        }));

        using var raw = await RawWebSocket.ConnectAsync(server.WebSocketUri("/echo"), extraHeaders: "Sec-WebSocket-Extensions: permessage-deflate\r\n");
        Assert.Equal(101, raw.StatusCode);
        await raw.SendFrameAsync(0x2, s_garbage, rsv: 0b100);

        Assert.Equal((ushort)1007, (await raw.ReadCloseAsync()).Code);
        Assert.True(await raw.WaitForTcpCloseAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task BackendLeg_GarbageCompressedFrame_ClosesTheBackendWithAMasked1007_AndTheClientToo()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        await using var proxy = await TestServer.StartAsync(app => app.MapWebSocketProxy("/p", $"ws://127.0.0.1:{port}/", p => p.EnableBackendCompression = true));

        var connecting = WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p"));
        using var backend = await listener.AcceptTcpClientAsync();
        var stream = backend.GetStream();
        var head = await ReadHeadAsync(stream);
        Assert.Contains("permessage-deflate", head, StringComparison.OrdinalIgnoreCase);
        var key = head.Split("\r\n").Single(l => l.StartsWith("Sec-WebSocket-Key:", StringComparison.OrdinalIgnoreCase))["Sec-WebSocket-Key:".Length..].Trim();
        var accept = Sluice.Protocol.ServerHandshake.ComputeAccept(key);
        await stream.WriteAsync(Encoding.ASCII.GetBytes(
            $"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"));
        using var client = await connecting;

        // A server's frame: unmasked, RSV1 set, data that does not inflate.
        await stream.WriteAsync(RawWebSocket.Frame(0x2, s_garbage, mask: false, rsv: 0b100));

        var (masked, opcode, payload) = await ReadClientFrameAsync(stream);
        Assert.True(masked, "a client's frames are masked");
        Assert.Equal(0x8, opcode);
        Assert.Equal(1007, BinaryPrimitives.ReadUInt16BigEndian(payload));
        Assert.Equal(WebSocketCloseStatus.InvalidPayloadData, (await client.ReceiveCloseAsync()).Status);
    }

    private static async Task<string> ReadHeadAsync(NetworkStream stream)
    {
        var head = new StringBuilder();
        var one = new byte[1];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (!head.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal) && await stream.ReadAsync(one, timeout.Token) == 1)
        {
            head.Append((char)one[0]);
        }

        return head.ToString();
    }

    private static async Task<(bool Masked, int Opcode, byte[] Payload)> ReadClientFrameAsync(NetworkStream stream)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var header = new byte[2];
        await stream.ReadExactlyAsync(header, timeout.Token);
        var length = header[1] & 0x7F;
        Assert.True(length < 126, "a close frame's payload is at most 125 bytes");
        var masked = (header[1] & 0x80) != 0;
        var mask = new byte[masked ? 4 : 0];
        await stream.ReadExactlyAsync(mask, timeout.Token);
        var payload = new byte[length];
        await stream.ReadExactlyAsync(payload, timeout.Token);
        for (var i = 0; masked && i < payload.Length; i++)
        {
            payload[i] ^= mask[i % 4];
        }

        return (masked, header[0] & 0x0F, payload);
    }
}
