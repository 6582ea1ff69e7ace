using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Hardening;

/// <summary>
/// A compressed frame whose data does not inflate (RFC 7692 section 8): the gateway fails the connection with a
/// close frame, 1007, instead of resetting TCP, on a hosted route and on a proxied one.
/// </summary>
public class DeflateTests
{
    // Not a DEFLATE stream: block type 3 is reserved, so every inflater rejects it at the first byte.
    private static readonly byte[] s_garbage = [0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x01, 0x02, 0x03];

    [Theory]
    [InlineData("/echo")]
    [InlineData("/proxied")]
    public async Task InvalidCompressedData_ClosesWith1007_NotAReset(string route)
    {
        await using var backend = await ExternalPeer.StartServerAsync(PeerKind.Python);
        using var folder = new ConfigFolder();
        var path = folder.Write($$"""
            { "routes": [
                { "path": "/echo", "handler": { "type": "echo" }, "compression": true },
                { "path": "/proxied", "proxy": { "target": "ws://{{backend.Authority}}/echo" }, "compression": true } ] }
            """);
        await using var gateway = await GatewayProcess.StartAsync(path);

        using var socket = await RawWebSocket.ConnectAsync(gateway.Ws(route), extraHeaders: "Sec-WebSocket-Extensions: permessage-deflate\r\n");
        Assert.Equal(101, socket.StatusCode);
        Assert.Contains("permessage-deflate", socket.ResponseHead, StringComparison.OrdinalIgnoreCase);

        // A good compressed message first: the leg does inflate, so the bad one below is judged by the inflater.
        await socket.SendFrameAsync(0x1, Deflate("hello"), rsv: 0b100);
        var echo = await socket.ReadFrameAsync();
        Assert.NotNull(echo);
        Assert.Equal(0x1, echo.Opcode);

        await socket.SendFrameAsync(0x1, s_garbage, rsv: 0b100);
        var (code, _) = await socket.ReadCloseAsync();
        Assert.Equal((ushort)1007, code);
        Assert.True(await socket.WaitForTcpCloseAsync(TimeSpan.FromSeconds(10)));

        // The process and its other connections are unaffected.
        using var next = await WebSocketClient.ConnectAsync(gateway.Ws("/echo"));
        await next.SendTextAsync("still here");
        Assert.Equal("still here", await next.ReceiveTextAsync());
    }

    /// <summary>Raw DEFLATE with the 00 00 FF FF tail removed, as RFC 7692 section 7.2.1 sends a message.</summary>
    private static byte[] Deflate(string text)
    {
        using var buffer = new MemoryStream();
        using var deflate = new System.IO.Compression.DeflateStream(buffer, System.IO.Compression.CompressionLevel.Fastest, leaveOpen: true);
        deflate.Write(System.Text.Encoding.UTF8.GetBytes(text));
        deflate.Flush(); // a sync flush: the bytes end with 00 00 FF FF and no final block
        var bytes = buffer.ToArray();
        Assert.True(bytes.AsSpan().EndsWith((byte[])[0x00, 0x00, 0xFF, 0xFF]));
        return bytes[..^4];
    }
}
