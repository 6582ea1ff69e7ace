using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.WebSockets;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Sluice.Tests.Infrastructure;
using Sluice.Tests.Proxy;

namespace Sluice.Tests.Diagnostics;

/// <summary>The <c>Sluice</c> ActivitySource: a connection activity continuing the client's trace, passed to the backend, and message activities.</summary>
public sealed class TracingTests : IDisposable
{
    private readonly ConcurrentQueue<Activity> _stopped = new();
    private readonly ActivityListener _listener;

    public TracingTests()
    {
        _listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == SluiceDiagnostics.ActivitySourceName,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = _stopped.Enqueue,
        };
        ActivitySource.AddActivityListener(_listener);
    }

    public void Dispose() => _listener.Dispose();

    [Fact]
    public async Task AProxiedConnection_ContinuesTheClientsTrace_PassesItToTheBackend_AndTracesEachMessage()
    {
        await using var backend = await RecordingBackend.StartAsync();
        var route = "/traced-" + Guid.NewGuid().ToString("N")[..8];
        await using var proxy = await TestServer.StartAsync(app => app.MapWebSocketProxy(route, $"ws://{backend.Authority}/headers/x", p =>
            p.Inbound(m => m.Text == "drop me" ? null : m)));
        var traceId = ActivityTraceId.CreateRandom();
        var clientSpan = ActivitySpanId.CreateRandom();

        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri(route), o => o.SetRequestHeader("traceparent", $"00-{traceId}-{clientSpan}-01"));
        using var seen = JsonDocument.Parse(await client.ReceiveTextAsync());
        await client.SendTextAsync("drop me");
        await client.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", CancellationToken.None);

        var connection = await WaitForAsync(a => a.OperationName == "sluice.connection" && (string?)a.GetTagItem("sluice.route") == route);
        Assert.Equal(traceId, connection.TraceId);
        Assert.Equal(1000, connection.GetTagItem("sluice.close.code"));
        Assert.NotNull(connection.GetTagItem("sluice.connection.id"));

        var backendTraceParent = seen.RootElement.GetProperty("headers").GetProperty("traceparent").GetString()!;
        Assert.Equal($"00-{traceId}-{connection.SpanId}-01", backendTraceParent);

        var message = await WaitForAsync(a => a.OperationName == "sluice.message inbound" && (string?)a.GetTagItem("sluice.route") == route);
        Assert.Equal(connection.SpanId, message.ParentSpanId);
        Assert.Equal("dropped", message.GetTagItem("sluice.outcome"));
        Assert.Equal(7, message.GetTagItem("sluice.message.size"));
    }

    [Fact]
    public async Task WithoutATraceparent_AHostedConnection_StartsItsOwnTrace()
    {
        var route = "/own-" + Guid.NewGuid().ToString("N")[..8];
        await using var server = await TestServer.StartAsync(app => app.MapWebSocket(route, ws => ws.OnMessage((m, _) => m)));

        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri(route));
        await client.SendTextAsync("hi");
        await client.ReceiveTextAsync();
        await client.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);

        var connection = await WaitForAsync(a => a.OperationName == "sluice.connection" && (string?)a.GetTagItem("sluice.route") == route);
        var message = await WaitForAsync(a => a.OperationName == "sluice.message inbound" && (string?)a.GetTagItem("sluice.route") == route);
        Assert.Equal(connection.TraceId, message.TraceId);
        Assert.Equal("forwarded", message.GetTagItem("sluice.outcome"));
    }

    private async Task<Activity> WaitForAsync(Func<Activity, bool> match)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            var found = _stopped.FirstOrDefault(match);
            if (found is not null)
            {
                return found;
            }

            Assert.True(DateTime.UtcNow < deadline, "The activity was not recorded: " + string.Join(", ", _stopped.Select(a => a.OperationName)));
            await Task.Delay(20);
        }
    }
}
