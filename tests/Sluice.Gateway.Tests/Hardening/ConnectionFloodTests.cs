using System.Net.Sockets;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Hardening;

/// <summary>
/// Floods of connections that take a file descriptor and never finish their handshake, against the real gateway under
/// a low open-file limit: the gateway must refuse what does not fit in its budget, stay alive, keep serving the
/// WebSockets already open, and accept newcomers again once the flood is gone.
/// </summary>
public class ConnectionFloodTests
{
    // 1024 descriptors: the runtime holds about 200 at start; before the fix 850 idle sockets took the process down.
    private const int OpenFileLimit = 1024;

    /// <summary>How far a flooding connection gets into its handshake before it goes silent.</summary>
    public enum Stage
    {
        Nothing,
        PartialRequestLine,
        PartialHeaders,
        HeadersWithoutBlankLine,
        UpgradeThenSilence,
        UpgradedThenPartialFrame,
        ProxiedUpgradeThenSilence,
        KeepAliveHttpThenSilence,
    }

    /// <summary>A gateway under the low open-file limit with an echo route and a route proxied back to its own echo.</summary>
    private static Task<GatewayProcess> StartSelfProxyingGatewayAsync(ConfigFolder folder)
    {
        var port = GatewayProcess.FreePort();
        var path = folder.Write($$"""
            { "routes": [
                { "path": "/echo", "handler": { "type": "echo" } },
                { "path": "/p", "proxy": { "target": "ws://127.0.0.1:{{port}}/echo" } } ] }
            """);
        return GatewayProcess.StartAsync(path, urls: $"http://127.0.0.1:{port}", openFileLimit: OpenFileLimit);
    }

    [Fact]
    public async Task IdleHalfSentAndUpgradedFlood_StaysInsideTheBudget_CanaryKeepsEchoing_NewcomersServedAfter()
    {
        using var folder = new ConfigFolder();
        await using var gateway = await StartSelfProxyingGatewayAsync(folder);
        using var canary = await WebSocketClient.ConnectAsync(gateway.Ws("/echo"));

        // 900 sockets that send nothing, 250 slowloris requests, 300 upgrades (half of them proxied back to the gateway
        // itself, three descriptors each) that then stay open: together far beyond 1024.
        var stages = Enumerable.Repeat(Stage.Nothing, 900)
            .Concat(Enumerable.Repeat(Stage.PartialHeaders, 250))
            .Concat(Enumerable.Repeat(Stage.UpgradeThenSilence, 150))
            .Concat(Enumerable.Repeat(Stage.ProxiedUpgradeThenSilence, 150))
            .ToList();
        await using var flood = await Flood.OpenAsync(gateway, stages);

        await AssertCanaryEchoesAsync(gateway, canary, rounds: 20);

        await flood.DisposeAsync();
        await AssertNewcomersServedAsync(gateway);
        await AssertCanaryEchoesAsync(gateway, canary, rounds: 1);

        // Refused sockets are summed up every ten seconds (event 503), not logged one by one.
        Assert.DoesNotContain("maximum number of concurrent connections", gateway.Output, StringComparison.Ordinal);
        Assert.True(gateway.Output.Split('\n').Length < 200, gateway.Output);
    }

    /// <summary>
    /// A seeded random mix of every handshake stage, in waves, each wave released before the next. Bounded: three waves
    /// of at most 1,200 connections, a few seconds each.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task FloodAtEveryStageOfTheHandshake_NeverTakesTheGatewayDown(int seed)
    {
        using var folder = new ConfigFolder();
        await using var gateway = await StartSelfProxyingGatewayAsync(folder);
        using var canary = await WebSocketClient.ConnectAsync(gateway.Ws("/echo"));
        var random = new Random(seed);
        var all = Enum.GetValues<Stage>();

        for (var wave = 0; wave < 3; wave++)
        {
            var stages = Enumerable.Range(0, random.Next(800, 1200)).Select(_ => all[random.Next(all.Length)]).ToList();
            await using (var flood = await Flood.OpenAsync(gateway, stages))
            {
                await AssertCanaryEchoesAsync(gateway, canary, rounds: 5);
            }

            await AssertNewcomersServedAsync(gateway);
        }
    }

    [Fact]
    public async Task ConnectionsThatNeverSendARequest_AreClosedByTheServer()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write("""{ "routes": [ { "path": "/echo", "handler": { "type": "echo" } } ] }""");
        await using var gateway = await GatewayProcess.StartAsync(path);
        using var silent = new TcpClient();
        await silent.ConnectAsync("127.0.0.1", gateway.Port);
        using var halfSent = new TcpClient();
        await halfSent.ConnectAsync("127.0.0.1", gateway.Port);
        await halfSent.GetStream().WriteAsync("GET /echo HTTP/1.1\r\nHost: x\r\n"u8.ToArray());

        // The gateway's header and keep-alive timeouts are a few seconds; a minute bounds the test, not the speed.
        Assert.True(await ClosedByServerAsync(silent, TimeSpan.FromSeconds(60)), "a connection that sent nothing stayed open");
        Assert.True(await ClosedByServerAsync(halfSent, TimeSpan.FromSeconds(60)), "a connection that sent half a request stayed open");
    }

    private static async Task<bool> ClosedByServerAsync(TcpClient client, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        var buffer = new byte[4096];
        try
        {
            while (await client.GetStream().ReadAsync(buffer, cts.Token) > 0)
            {
            }

            return true;
        }
        catch (IOException)
        {
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    private static async Task AssertCanaryEchoesAsync(GatewayProcess gateway, ClientWebSocket canary, int rounds)
    {
        for (var i = 0; i < rounds; i++)
        {
            Assert.False(gateway.HasExited, $"the gateway exited. Output:\n{gateway.Output}\nErrors:\n{gateway.Error}");
            await canary.SendTextAsync($"canary {i}");
            Assert.Equal($"canary {i}", await canary.ReceiveTextAsync(TimeSpan.FromSeconds(15)));
            await Task.Delay(100);
        }
    }

    /// <summary>Once the flood is released, a new client (hosted and proxied) is served again, within a bound.</summary>
    private static async Task AssertNewcomersServedAsync(GatewayProcess gateway)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        foreach (var route in new[] { "/echo", "/p" })
        {
            while (true)
            {
                Assert.False(gateway.HasExited, $"the gateway exited. Output:\n{gateway.Output}\nErrors:\n{gateway.Error}");
                try
                {
                    using var client = await WebSocketClient.ConnectAsync(gateway.Ws(route));
                    await client.SendTextAsync("newcomer");
                    Assert.Equal("newcomer", await client.ReceiveTextAsync());
                    await client.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
                    break;
                }
                catch (Exception ex) when (ex is WebSocketException or IOException or OperationCanceledException && DateTime.UtcNow < deadline)
                {
                    // Connections of the flood are still being torn down.
                    await Task.Delay(250);
                }
            }
        }
    }

    /// <summary>Opens many connections, each taken to its stage and then left silent, until disposed.</summary>
    private sealed class Flood : IAsyncDisposable
    {
        private readonly List<TcpClient> _clients = [];

        public static async Task<Flood> OpenAsync(GatewayProcess gateway, IReadOnlyList<Stage> stages)
        {
            var flood = new Flood();
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            await Parallel.ForEachAsync(stages, new ParallelOptions { MaxDegreeOfParallelism = 32, CancellationToken = cts.Token }, async (stage, token) =>
            {
                var client = new TcpClient { NoDelay = true };
                lock (flood._clients)
                {
                    flood._clients.Add(client);
                }

                try
                {
                    using var step = CancellationTokenSource.CreateLinkedTokenSource(token);
                    step.CancelAfter(TimeSpan.FromSeconds(10));
                    await client.ConnectAsync("127.0.0.1", gateway.Port, step.Token);
                    await AdvanceAsync(client.GetStream(), stage, step.Token);
                }
                catch (Exception ex) when (ex is SocketException or IOException or OperationCanceledException)
                {
                    // Refused, reset or closed by the gateway: what it may do with what does not fit.
                }
            });
            return flood;
        }

        public ValueTask DisposeAsync()
        {
            lock (_clients)
            {
                foreach (var client in _clients)
                {
                    client.Dispose();
                }

                _clients.Clear();
            }

            return ValueTask.CompletedTask;
        }

        private static async Task AdvanceAsync(NetworkStream stream, Stage stage, CancellationToken token)
        {
            var key = Convert.ToBase64String(RandomNumberGenerator.GetBytes(16));
            string Upgrade(string route) => $"GET {route} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n";
            var bytes = stage switch
            {
                Stage.Nothing => null,
                Stage.PartialRequestLine => "GET /ec",
                Stage.PartialHeaders => "GET /echo HTTP/1.1\r\nHost: x\r\nUpgr",
                Stage.HeadersWithoutBlankLine => Upgrade("/echo"),
                Stage.UpgradeThenSilence or Stage.UpgradedThenPartialFrame => Upgrade("/echo") + "\r\n",
                Stage.ProxiedUpgradeThenSilence => Upgrade("/p") + "\r\n",
                Stage.KeepAliveHttpThenSilence => "GET /_sluice/healthz HTTP/1.1\r\nHost: x\r\n\r\n",
                _ => throw new ArgumentOutOfRangeException(nameof(stage)),
            };
            if (bytes is null)
            {
                return;
            }

            await stream.WriteAsync(Encoding.ASCII.GetBytes(bytes), token);
            if (stage is Stage.UpgradeThenSilence or Stage.UpgradedThenPartialFrame or Stage.ProxiedUpgradeThenSilence or Stage.KeepAliveHttpThenSilence)
            {
                // Reads the response head (101, 503 or a health answer) so that the connection is where the stage says.
                var buffer = new byte[1024];
                var head = new StringBuilder();
                while (!head.ToString().Contains("\r\n\r\n", StringComparison.Ordinal))
                {
                    var read = await stream.ReadAsync(buffer, token);
                    if (read == 0)
                    {
                        return;
                    }

                    head.Append(Encoding.ASCII.GetString(buffer, 0, read));
                }

                if (stage == Stage.UpgradedThenPartialFrame && head.ToString().StartsWith("HTTP/1.1 101", StringComparison.Ordinal))
                {
                    // A masked text frame header announcing 100 bytes, and nothing more.
                    await stream.WriteAsync(new byte[] { 0x81, 0x80 | 100, 1, 2 }, token);
                }
            }
        }
    }
}
