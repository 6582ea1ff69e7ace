using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests;

/// <summary>
/// A close the gateway starts over a message past <c>limits.maxMessageBytes</c> completes as soon as the client answers
/// it, in host and proxy mode, whole or fragmented, even when the client is still sending the message: the gateway then
/// ends TCP at once. The close timer is a minute here; before the fix the socket stayed open until it fired.
/// </summary>
public class CloseHandshakeTests
{
    [Theory]
    [InlineData("/echo", false)]
    [InlineData("/echo", true)]
    [InlineData("/py", false)]
    [InlineData("/py", true)]
    public async Task OverTheMessageLimit_1009_AndTcpEndsWhenTheClientAnswers(string route, bool fragmented)
    {
        await using var python = await ExternalPeer.StartServerAsync(PeerKind.Python);
        using var folder = new ConfigFolder();
        var config = folder.Write($$"""
            {
              "limits": { "maxMessageBytes": 65536, "closeTimeoutSeconds": 60 },
              "routes": [
                { "path": "/echo", "handler": { "type": "echo" } },
                { "path": "/py", "proxy": { "target": "ws://{{python.Authority}}/echo" } }
              ]
            }
            """);
        await using var gateway = await GatewayProcess.StartAsync(config);
        using var client = await RawWebSocket.ConnectAsync(gateway.Ws(route));

        byte[] message = fragmented
            ? [.. RawWebSocket.Frame(0x2, new byte[60_000], fin: false), .. RawWebSocket.Frame(0x0, new byte[60_000])]
            : RawWebSocket.Frame(0x2, new byte[200_000]);
        var firstPart = fragmented ? 8 + 60_000 + 8 + 100 : 14 + 1000;   // past the header that breaks the limit
        await client.SendRawAsync(message[..firstPart]);
        Assert.Equal((ushort)1009, (await client.ReadCloseAsync()).Code);

        await client.SendRawAsync(message[firstPart..]);
        await client.SendCloseAsync(1009);
        Assert.True(await client.WaitForTcpCloseAsync(TimeSpan.FromSeconds(20)), "the gateway kept TCP open after the close handshake");
    }

    /// <summary>
    /// With permessage-deflate (python3-websockets negotiates it) the leg is System.Net.WebSockets': the gateway reads on
    /// to the client's close there too, so the close frame is not lost to a reset under unread data.
    /// </summary>
    [Theory]
    [InlineData("over-limit")]
    [InlineData("over-limit-deflate")]
    public async Task OverTheMessageLimit_APythonClientReads1009_WithAndWithoutCompression(string scenario)
    {
        using var folder = new ConfigFolder();
        var config = folder.Write("""
            {
              "limits": { "maxMessageBytes": 65536 },
              "routes": [ { "path": "/echo", "handler": { "type": "echo" }, "compression": true } ]
            }
            """);
        await using var gateway = await GatewayProcess.StartAsync(config);

        Assert.Equal("OK over-limit 1009", await ExternalPeer.RunClientAsync(PeerKind.Python, gateway.Ws("/echo"), scenario));
    }
}
