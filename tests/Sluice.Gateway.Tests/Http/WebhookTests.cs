using System.Net.WebSockets;
using System.Text.Json;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Http;

/// <summary>
/// A route's <c>events</c> through the real gateway process, against a real Kestrel service: what is sent, delivery
/// at least once across a restart of the service, a bounded queue when the service is down, connections never held
/// up by the webhook, and a bounded drain at shutdown.
/// </summary>
public sealed class WebhookTests
{
    private static string Config(string url, string extra = "") => $$"""
        {
          "routes": [ { "path": "/e", "handler": { "type": "echo" }, "upgrade": ["key"], "events": { "url": "{{url}}", "timeoutMs": 5000 {{extra}} } } ],
          "policies": { "key": { "type": "api-key", "options": { "query": "key", "keys": [ { "key": "k-alice", "subject": "alice" } ] } } }
        }
        """;

    [Fact]
    public async Task ConnectAndDisconnect_ArePostedWithTheirFields()
    {
        await using var service = await HttpService.AnswerAsync(204);
        using var folder = new ConfigFolder();
        await using var gateway = await GatewayProcess.StartAsync(folder.Write(Config(service.Url("/events"))));

        using (var client = await WebSocketClient.ConnectAsync(gateway.Ws("/e?key=k-alice")))
        {
            await client.CloseAsync((WebSocketCloseStatus)4001, "bye", CancellationToken.None);
        }

        // Workers deliver in parallel: the two events may arrive in either order.
        var calls = new[] { await service.NextCallAsync(), await service.NextCallAsync() };
        var connect = calls.Single(c => c.Body.Contains("\"event\":\"connect\"", StringComparison.Ordinal));
        var disconnect = calls.Single(c => c.Body.Contains("\"event\":\"disconnect\"", StringComparison.Ordinal));
        Assert.Equal("/events", connect.Path);
        Assert.StartsWith("application/json", connect.ContentType, StringComparison.Ordinal);
        using var first = JsonDocument.Parse(connect.Body);
        using var second = JsonDocument.Parse(disconnect.Body);
        Assert.Equal("connect", first.RootElement.GetProperty("event").GetString());
        Assert.Equal("/e", first.RootElement.GetProperty("route").GetString());
        Assert.Equal("alice", first.RootElement.GetProperty("subject").GetString());
        Assert.Equal("127.0.0.1", first.RootElement.GetProperty("ip").GetString());
        Assert.False(first.RootElement.TryGetProperty("closeCode", out _));
        Assert.Equal("disconnect", second.RootElement.GetProperty("event").GetString());
        Assert.Equal(first.RootElement.GetProperty("connectionId").GetString(), second.RootElement.GetProperty("connectionId").GetString());
        Assert.False(string.IsNullOrEmpty(first.RootElement.GetProperty("connectionId").GetString()));
        Assert.Equal("alice", second.RootElement.GetProperty("subject").GetString());
        Assert.Equal(4001, second.RootElement.GetProperty("closeCode").GetInt32());
        Assert.Equal("bye", second.RootElement.GetProperty("closeReason").GetString());
    }

    [Fact]
    public async Task ServiceDownThenUp_TheEventArrivesAfterTheRestart()
    {
        var service = await HttpService.AnswerAsync(200);
        var port = service.Port;
        using var folder = new ConfigFolder();
        await using var gateway = await GatewayProcess.StartAsync(folder.Write(Config(service.Url("/events"))));
        var client = await WebSocketClient.ConnectAsync(gateway.Ws("/e?key=k-alice"));
        Assert.Equal("connect", JsonDocument.Parse((await service.NextCallAsync()).Body).RootElement.GetProperty("event").GetString());
        await service.DisposeAsync();

        await client.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", CancellationToken.None);
        client.Dispose();
        // The service stays down while the gateway tries (and fails) to deliver the disconnect.
        await Task.Delay(TimeSpan.FromSeconds(2));
        await using var restarted = await HttpService.AnswerAsync(200, port: port);

        using var delivered = JsonDocument.Parse((await restarted.NextCallAsync(TimeSpan.FromSeconds(45))).Body);
        Assert.Equal("disconnect", delivered.RootElement.GetProperty("event").GetString());
        Assert.Equal(1000, delivered.RootElement.GetProperty("closeCode").GetInt32());
    }

    [Fact]
    public async Task ServiceDown_TheQueueStaysBounded_DropsAreCountedAndLogged()
    {
        using var folder = new ConfigFolder();
        await using var gateway = await GatewayProcess.StartAsync(folder.Write(Config($"http://127.0.0.1:{GatewayProcess.FreePort()}/events", ", \"queueSize\": 3")));

        for (var i = 0; i < 20; i++)
        {
            using var client = await WebSocketClient.ConnectAsync(gateway.Ws("/e?key=k-alice"));
            await client.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
        }

        // 40 events: at most 4 in delivery and 3 waiting, the rest dropped.
        var metrics = await gateway.MetricsAsync(m => m.Sum("sluice_webhooks_dropped_total", "reason=\"queue_full\"") >= 33);
        Assert.True(metrics.Sum("sluice_webhooks_dropped_total", "reason=\"queue_full\"", "route=\"/e\"") >= 33, "fewer drops than the queue's bound implies");
        Assert.True(metrics.Sum("sluice_webhooks_queued", "route=\"/e\"") <= 3);
        await gateway.WaitForOutputAsync("the queue is full");
    }

    [Fact]
    public async Task HangingService_HoldsUpNoUpgradeAndNoClose()
    {
        await using var service = await HttpService.StartAsync(async (context, _) => await Task.Delay(TimeSpan.FromMinutes(2), context.RequestAborted));
        using var folder = new ConfigFolder();
        await using var gateway = await GatewayProcess.StartAsync(folder.Write(Config(service.Url("/events")).Replace("\"timeoutMs\": 5000", "\"timeoutMs\": 600000", StringComparison.Ordinal)));

        // Each step is bounded by the client's 10 s timeouts: a webhook awaited in the upgrade or the close would not fit.
        for (var i = 0; i < 5; i++)
        {
            using var client = await WebSocketClient.ConnectAsync(gateway.Ws("/e?key=k-alice"));
            await client.SendTextAsync("ping");
            Assert.Equal("ping", await client.ReceiveTextAsync());
            using var closeTimeout = new CancellationTokenSource(WebSocketClient.Timeout);
            await client.CloseAsync(WebSocketCloseStatus.NormalClosure, null, closeTimeout.Token);
            Assert.Equal(WebSocketState.Closed, client.State);
        }

        await service.NextCallAsync();
    }

    [Fact]
    public async Task Shutdown_WithTheServiceDown_DrainsBrieflyAndExits()
    {
        using var folder = new ConfigFolder();
        var gateway = await GatewayProcess.StartAsync(folder.Write(Config($"http://127.0.0.1:{GatewayProcess.FreePort()}/events")));
        await using (gateway)
        {
            using var client = await WebSocketClient.ConnectAsync(gateway.Ws("/e?key=k-alice"));

            Assert.Equal(0, await gateway.StopAsync(TimeSpan.FromSeconds(40)));
            Assert.Contains("undelivered at shutdown", gateway.Output, StringComparison.Ordinal);
        }
    }
}
