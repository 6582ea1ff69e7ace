using Microsoft.AspNetCore.Builder;
using Sluice.Tests.Infrastructure;

namespace Sluice.Tests.Interop;

/// <summary>Clients that share no code with Sluice (python3-websockets, node ws) against a hosted endpoint.</summary>
public sealed class HostInteropTests : IAsyncLifetime
{
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(app =>
    {
        app.MapWebSocket("/echo", ws =>
        {
            ws.ConfigureOptions(o => o.MaxMessageBytes = 4 * 1024 * 1024);
            ws.OnMessage((m, c) => m);
        });
        app.MapWebSocket("/protocols", ws =>
        {
            ws.ConfigureOptions(o =>
            {
                o.SubProtocols.Add("chat.v2");
                o.SubProtocols.Add("chat.v1");
            });
            ws.OnMessage((m, c) => m);
        });
    });

    public async Task DisposeAsync() => await _server.DisposeAsync();

    [Theory]
    [InlineData(PeerKind.Python, "sizes")]
    [InlineData(PeerKind.Python, "order")]
    [InlineData(PeerKind.Python, "fragmented")]
    [InlineData(PeerKind.Node, "sizes")]
    [InlineData(PeerKind.Node, "order")]
    [InlineData(PeerKind.Node, "fragmented")]
    public async Task ExternalClient_Scenario_Succeeds(PeerKind kind, string scenario) =>
        await ExternalPeer.RunClientAsync(kind, _server.WebSocketUri("/echo"), scenario);

    [Theory]
    [InlineData(PeerKind.Python)]
    [InlineData(PeerKind.Node)]
    public async Task ExternalClient_Close_IsEchoedWithItsCode(PeerKind kind)
    {
        var result = await ExternalPeer.RunClientAsync(kind, _server.WebSocketUri("/echo"), "close");
        Assert.StartsWith("OK close 4000", result, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(PeerKind.Python)]
    [InlineData(PeerKind.Node)]
    public async Task ExternalClient_GetsTheSubprotocolBothSupport(PeerKind kind)
    {
        var result = await ExternalPeer.RunClientAsync(kind, _server.WebSocketUri("/protocols"), "subprotocol");
        Assert.Equal("OK subprotocol chat.v1", result);
    }
}
