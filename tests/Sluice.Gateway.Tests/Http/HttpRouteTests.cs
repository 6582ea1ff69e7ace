using System.Diagnostics;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Http;

/// <summary>
/// Routes whose <c>handler</c> is <c>http</c>, through the real gateway process, against real Kestrel services: order
/// per connection, concurrency across connections and its limit, failures as error frames, replies through the
/// outbound policies, pushes through the admin API, and a python client.
/// </summary>
public sealed class HttpRouteTests(HttpRouteTests.Services services) : IClassFixture<HttpRouteTests.Services>
{
    [Fact]
    public async Task ThousandMessagesOfOneConnection_ArePostedAndAnsweredInOrder()
    {
        using var client = await WebSocketClient.ConnectAsync(services.Gateway.Ws("/order"));

        var sending = Task.Run(async () =>
        {
            for (var i = 0; i < 1000; i++)
            {
                await client.SendTextAsync($$"""{"n":{{i}}}""");
            }
        });
        for (var i = 0; i < 1000; i++)
        {
            using var reply = JsonDocument.Parse(await client.ReceiveTextAsync(TimeSpan.FromSeconds(30)));
            Assert.Equal(i, reply.RootElement.GetProperty("n").GetInt32());
        }

        await sending;
        var calls = new List<HttpCall>();
        while (calls.Count < 1000 && services.Echo.Calls.Reader.TryRead(out var call))
        {
            calls.Add(call);
        }

        Assert.Equal(Enumerable.Range(0, 1000), calls.Select(c => JsonDocument.Parse(c.Body).RootElement.GetProperty("n").GetInt32()));
        Assert.All(calls, c => Assert.Equal("application/json", c.ContentType));
        Assert.All(calls, c => Assert.Equal("/order", c.Headers["X-Sluice-Route"]));
        Assert.Single(calls.Select(c => c.Headers["X-Sluice-Connection"]).Distinct());
    }

    [Fact]
    public async Task RequestsOfSeveralConnections_AreInFlightAtOnce()
    {
        // The service answers only once four requests wait together: serialized requests would time out instead.
        var clients = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => WebSocketClient.ConnectAsync(services.Gateway.Ws("/together"))));

        await Task.WhenAll(clients.Select(c => c.SendTextAsync("hi")));

        foreach (var client in clients)
        {
            Assert.Equal("together", await client.ReceiveTextAsync(TimeSpan.FromSeconds(30)));
            client.Dispose();
        }
    }

    [Fact]
    public async Task MaxConcurrentRequests_BoundsTheRequestsInFlightAcrossConnections()
    {
        var clients = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => WebSocketClient.ConnectAsync(services.Gateway.Ws("/limited"))));

        await Task.WhenAll(clients.Select(async client =>
        {
            for (var i = 0; i < 5; i++)
            {
                await client.SendTextAsync("x");
                Assert.Equal("ok", await client.ReceiveTextAsync(TimeSpan.FromSeconds(30)));
            }
        }));

        Assert.Equal(1, services.LimitedMaxInFlight);
        foreach (var client in clients)
        {
            client.Dispose();
        }
    }

    [Theory]
    [InlineData("/slow", "the service did not answer in time")]
    [InlineData("/fail", "the service answered 500")]
    [InlineData("/huge", "the service's answer is too large")]
    [InlineData("/down", "the service could not be reached")]
    public async Task FailedRequest_RepliesAnErrorFrame_AndTheConnectionStays(string route, string message)
    {
        using var client = await WebSocketClient.ConnectAsync(services.Gateway.Ws(route));

        await client.SendTextAsync("hello");

        using var error = JsonDocument.Parse(await client.ReceiveTextAsync(TimeSpan.FromSeconds(30)));
        var body = error.RootElement.GetProperty("error");
        Assert.Equal("http", body.GetProperty("policy").GetString());
        Assert.Equal(502, body.GetProperty("status").GetInt32());
        Assert.Equal(message, body.GetProperty("message").GetString());
        Assert.Equal(WebSocketState.Open, client.State);
    }

    [Fact]
    public async Task Outcomes_AreCountedInMetrics()
    {
        using var client = await WebSocketClient.ConnectAsync(services.Gateway.Ws("/fail"));
        await client.SendTextAsync("hello");
        await client.ReceiveTextAsync(TimeSpan.FromSeconds(30));

        var metrics = await services.Gateway.MetricsAsync(m => m.Sum("sluice_http_route_requests_total", "outcome=\"status\"", "route=\"/fail\"") >= 1);

        Assert.True(metrics.Sum("sluice_http_route_requests_total", "outcome=\"status\"", "route=\"/fail\"") >= 1);
    }

    [Fact]
    public async Task AnswerOverMaxMessageBytes_IsNotReadWhole()
    {
        var before = services.Gateway.ResidentBytes();
        using var client = await WebSocketClient.ConnectAsync(services.Gateway.Ws("/huge"));

        await client.SendTextAsync("hello");
        await client.ReceiveTextAsync(TimeSpan.FromSeconds(30));

        var written = await services.Huge.Written.Task.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True(written < 50L * 1024 * 1024, $"the service wrote {written} bytes: the gateway read on");
        Assert.True(services.Gateway.ResidentBytes() - before < 50L * 1024 * 1024, "the gateway's memory grew by the answer's size");
    }

    [Fact]
    public async Task Reply_RunsThroughTheOutboundPolicies()
    {
        using var client = await WebSocketClient.ConnectAsync(services.Gateway.Ws("/outbound"));

        await client.SendTextAsync("""{"password":"hunter2","n":1}""");

        using var reply = JsonDocument.Parse(await client.ReceiveTextAsync());
        Assert.Equal("***", reply.RootElement.GetProperty("password").GetString());
        Assert.Equal(1, reply.RootElement.GetProperty("n").GetInt32());
    }

    [Fact]
    public async Task EmptyAnswer_SendsNothing_AndTheServicePushesLaterThroughTheAdminApi()
    {
        using var client = await WebSocketClient.ConnectAsync(services.Gateway.Ws("/quiet"));
        await client.SendTextAsync("subscribe me");
        var call = await services.Quiet.NextCallAsync();

        using var admin = new HttpClient();
        (await admin.PostAsync(services.Gateway.Http($"/_sluice/connections/{call.Headers["X-Sluice-Connection"]}/send"), new StringContent("pushed"))).EnsureSuccessStatusCode();

        // The push is the first message: the empty answer sent nothing.
        Assert.Equal("pushed", await client.ReceiveTextAsync());
    }

    [Fact]
    public async Task BinaryMessage_IsPostedAsOctetStream_AndABinaryAnswerComesBackBinary()
    {
        using var client = await WebSocketClient.ConnectAsync(services.Gateway.Ws("/order"));

        await client.SendBinaryAsync([1, 2, 3, 255]);

        var reply = await client.ReceiveMessageAsync();
        Assert.Equal(WebSocketMessageType.Binary, reply.Type);
        Assert.Equal([1, 2, 3, 255], reply.Payload);
    }

    [Fact]
    public async Task PythonClient_TextAndJsonMessages_ArePostedWithTheirContentTypeAndHeaders()
    {
        const string script = """
            import asyncio, sys, websockets
            async def main():
                async with websockets.connect(sys.argv[1]) as ws:
                    await ws.send("plain words")
                    print(await ws.recv(), flush=True)
                    await ws.send('{"json": true}')
                    print(await ws.recv(), flush=True)
            asyncio.run(asyncio.wait_for(main(), 30))
            """;
        using var python = Process.Start(new ProcessStartInfo("/usr/bin/python3", ["-c", script, services.Gateway.Ws("/types").ToString()])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        var output = python.StandardOutput.ReadToEndAsync();
        var error = python.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await python.WaitForExitAsync(timeout.Token);

        Assert.True(python.ExitCode == 0, await error);
        Assert.Equal(["text/plain; charset=utf-8 plain words", "application/json {\"json\": true}"], (await output).Trim().Split('\n'));
        var call = await services.Types.NextCallAsync();
        Assert.Equal("/types", call.Headers["X-Sluice-Route"]);
        Assert.False(call.Headers.ContainsKey("X-Sluice-Subject"));
    }

    /// <summary>The services, and one gateway with an http route for each.</summary>
    public sealed class Services : HttpServicesFixture
    {
        private readonly TaskCompletionSource _four = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _waiting;
        private int _limitedInFlight;
        private int _limitedMax;

        public HttpService Echo { get; private set; } = null!;

        public HttpService Quiet { get; private set; } = null!;

        public HttpService Types { get; private set; } = null!;

        public int LimitedMaxInFlight => Volatile.Read(ref _limitedMax);

        public override async Task InitializeAsync()
        {
            Echo = await Add(HttpService.StartAsync(async (context, call) =>
            {
                context.Response.ContentType = call.ContentType;
                await context.Response.Body.WriteAsync(call.Bytes);
            }));
            Quiet = await Add(HttpService.AnswerAsync(204));
            Types = await Add(HttpService.StartAsync((context, call) => context.Response.WriteAsync($"{call.ContentType} {call.Body}")));
            var together = await Add(HttpService.StartAsync(async (context, _) =>
            {
                if (Interlocked.Increment(ref _waiting) == 4)
                {
                    _four.TrySetResult();
                }

                await _four.Task.WaitAsync(TimeSpan.FromSeconds(20));
                await context.Response.WriteAsync("together");
            }));
            var limited = await Add(HttpService.StartAsync(async (context, _) =>
            {
                var now = Interlocked.Increment(ref _limitedInFlight);
                for (var max = Volatile.Read(ref _limitedMax); now > max; max = Volatile.Read(ref _limitedMax))
                {
                    Interlocked.CompareExchange(ref _limitedMax, now, max);
                }

                await Task.Delay(20);
                Interlocked.Decrement(ref _limitedInFlight);
                await context.Response.WriteAsync("ok");
            }));
            var slow = await Add(HttpService.StartAsync(async (context, _) => await Task.Delay(TimeSpan.FromSeconds(30), context.RequestAborted)));
            var fail = await Add(HttpService.AnswerAsync(500, """{"not":"sent"}"""));
            var huge = Huge.Url("/huge");
            var redact = await Add(HttpService.StartAsync((context, call) =>
            {
                context.Response.ContentType = "application/json";
                return context.Response.WriteAsync(call.Body);
            }));

            string Route(string path, string url, string extra = "") =>
                $$"""{ "path": "{{path}}", "handler": { "type": "http", "url": "{{url}}", "timeoutMs": 20000 {{extra}} } }""";
            var config = $$"""
                {
                  "limits": { "maxMessageBytes": 65536 },
                  "routes": [
                    {{Route("/order", Echo.Url("/messages"))}},
                    {{Route("/quiet", Quiet.Url("/messages"))}},
                    {{Route("/types", Types.Url("/messages"))}},
                    {{Route("/together", together.Url("/messages"))}},
                    {{Route("/limited", limited.Url("/messages"), ", \"maxConcurrentRequests\": 1")}},
                    { "path": "/slow", "handler": { "type": "http", "url": "{{slow.Url("/messages")}}", "timeoutMs": 1000 } },
                    {{Route("/fail", fail.Url("/messages"))}},
                    {{Route("/huge", huge)}},
                    {{Route("/down", $"http://127.0.0.1:{GatewayProcess.FreePort()}/messages")}},
                    { "path": "/outbound", "handler": { "type": "http", "url": "{{redact.Url("/messages")}}" }, "outbound": ["redact"] }
                  ],
                  "policies": { "redact": { "type": "json-redact", "options": { "paths": ["/password"], "mode": "mask" } } }
                }
                """;
            await StartGatewayAsync(config);
        }
    }
}
