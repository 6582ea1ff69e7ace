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

public class ProxySmokeTests
{
    [Fact]
    public async Task Proxy_RoundTrips_And_RelaysClose()
    {
        await using var backend = await TestServer.StartAsync(app => app.MapWebSocket("/echo/{room}", ws => ws.OnMessage((m, c) => WebSocketMessage.FromText($"{c.RouteValues["room"]}:{m.Text}"))));
        await using var proxy = await TestServer.StartAsync(app => app.MapWebSocketProxy("/p/{room}", $"ws://{backend.BaseAddress.Authority}/echo/${{params.room}}"));
        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p/lobby"));
        for (var i = 0; i < 100; i++)
        {
            await client.SendTextAsync($"hello {i}");
            Assert.Equal($"lobby:hello {i}", await client.ReceiveTextAsync());
        }

        await client.CloseAsync((WebSocketCloseStatus)4001, "bye", CancellationToken.None);
        Assert.Equal((WebSocketCloseStatus)4001, client.CloseStatus);
        Assert.Equal("bye", client.CloseStatusDescription);
    }
}
