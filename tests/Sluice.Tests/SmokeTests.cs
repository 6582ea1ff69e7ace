using System.Net.WebSockets;
using Microsoft.AspNetCore.Builder;
using Sluice.Tests.Infrastructure;

namespace Sluice.Tests;

public class SmokeTests
{
    [Fact]
    public async Task Echo_RoundTrips()
    {
        await using var server = await TestServer.StartAsync(app => app.MapWebSocket("/echo", ws => ws.OnMessage((m, c) => m)));
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/echo"));
        await client.SendTextAsync("hello");
        Assert.Equal("hello", await client.ReceiveTextAsync());
        await client.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", CancellationToken.None);
        Assert.Equal(WebSocketCloseStatus.NormalClosure, client.CloseStatus);
    }
}
