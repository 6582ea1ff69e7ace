using System.Globalization;
using System.Net.WebSockets;
using System.Text.Json;
using System.Text.RegularExpressions;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Hardening;

/// <summary>
/// A <c>rate-limit</c> with <c>key</c> keeps a budget per value the client writes: the values per partition are
/// bounded (<c>maxKeys</c>), and budgets of every partition are released when idle. Counted with the policy's gauge.
/// </summary>
public partial class RateLimitKeyTests
{
    private const string Config = """
        { "routes": [
            { "path": "/five", "handler": { "type": "echo" }, "inbound": ["five"] },
            { "path": "/default", "handler": { "type": "echo" }, "inbound": ["default"] },
            { "path": "/one", "handler": { "type": "echo" }, "inbound": ["one"] },
            { "path": "/idle", "handler": { "type": "echo" }, "inbound": ["idle"] } ],
          "policies": {
            "five": { "type": "rate-limit", "options": { "permits": 1000, "perSeconds": 60, "key": "/k", "maxKeys": 5 } },
            "default": { "type": "rate-limit", "options": { "permits": 1000, "perSeconds": 60, "key": "/k" } },
            "one": { "type": "rate-limit", "options": { "permits": 1000, "perSeconds": 60, "key": "/k", "maxKeys": 1, "action": "close" } },
            "idle": { "type": "rate-limit", "options": { "permits": 10, "perSeconds": 0.5, "partitionBy": "ip", "key": "/k" } } } }
        """;

    [Fact]
    public async Task NewKeysBeyondMaxKeys_GetThePolicysAction_AndTheBudgetsStayBounded()
    {
        using var folder = new ConfigFolder();
        await using var gateway = await GatewayProcess.StartAsync(folder.Write(Config));

        using (var client = await WebSocketClient.ConnectAsync(gateway.Ws("/five")))
        {
            for (var i = 0; i < 5; i++)
            {
                await client.SendTextAsync($$"""{"k":"key-{{i}}"}""");
                Assert.Equal($$"""{"k":"key-{{i}}"}""", await client.ReceiveTextAsync());
            }

            // 2,000 new values: each is refused, none is kept.
            for (var i = 5; i < 2005; i++)
            {
                await client.SendTextAsync($$"""{"k":"key-{{i}}"}""");
                using var error = JsonDocument.Parse(await client.ReceiveTextAsync());
                Assert.Equal(429, error.RootElement.GetProperty("error").GetProperty("status").GetInt32());
            }

            // A value already held keeps its budget.
            await client.SendTextAsync("""{"k":"key-3"}""");
            Assert.Equal("""{"k":"key-3"}""", await client.ReceiveTextAsync());
            Assert.Equal(5, await BudgetsAsync(gateway, "five", expected: 5));
        }

        // The default bound: 1,000 values per partition.
        using (var client = await WebSocketClient.ConnectAsync(gateway.Ws("/default")))
        {
            for (var i = 0; i < 1000; i++)
            {
                await client.SendTextAsync($$"""{"k":{{i}}}""");
                Assert.Equal($$"""{"k":{{i}}}""", await client.ReceiveTextAsync());
            }

            await client.SendTextAsync("""{"k":"one more"}""");
            Assert.Contains("\"status\":429", await client.ReceiveTextAsync(), StringComparison.Ordinal);
            Assert.Equal(1000, await BudgetsAsync(gateway, "default", expected: 1000));
        }

        // The action is the policy's own: here close, 1008.
        using (var client = await WebSocketClient.ConnectAsync(gateway.Ws("/one")))
        {
            await client.SendTextAsync("""{"k":"a"}""");
            Assert.Equal("""{"k":"a"}""", await client.ReceiveTextAsync());
            await client.SendTextAsync("""{"k":"b"}""");
            Assert.Equal(WebSocketCloseStatus.PolicyViolation, (await client.ReceiveCloseAsync()).Status);
        }
    }

    [Fact]
    public async Task IdleBudgets_AreReleased_ForEveryPartition()
    {
        using var folder = new ConfigFolder();
        await using var gateway = await GatewayProcess.StartAsync(folder.Write(Config));
        using (var client = await WebSocketClient.ConnectAsync(gateway.Ws("/idle")))
        {
            for (var i = 0; i < 200; i++)
            {
                await client.SendTextAsync($$"""{"k":{{i}}}""");
                Assert.Equal($$"""{"k":{{i}}}""", await client.ReceiveTextAsync());
            }

            Assert.Equal(200, await BudgetsAsync(gateway, "idle", expected: 200));
        }

        // A full bucket is the same as a new one: once refilled (0.5 s here), an idle budget is forgotten.
        Assert.Equal(0, await BudgetsAsync(gateway, "idle", expected: 0));
    }

    [Fact]
    public async Task MaxKeys_IsValidated_WithItsJsonPath()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write("""
            { "routes": [ { "path": "/e", "handler": { "type": "echo" }, "inbound": ["a", "b"] } ],
              "policies": { "a": { "type": "rate-limit", "options": { "permits": 1, "key": "/k", "maxKeys": 0 } },
                            "b": { "type": "rate-limit", "options": { "permits": 1, "maxKeys": 10 } } } }
            """);
        var (exitCode, output, error) = await GatewayProcess.RunAsync("--check", "--config", path);
        Assert.NotEqual(0, exitCode);
        Assert.Contains("policies.a.options.maxKeys", output + error, StringComparison.Ordinal);
        Assert.Contains("policies.b.options.maxKeys", output + error, StringComparison.Ordinal);
    }

    /// <summary>The policy's budgets gauge, asked until it shows <paramref name="expected"/> (the exporter caches briefly) or 15 s pass.</summary>
    private static async Task<double> BudgetsAsync(GatewayProcess gateway, string policy, double expected)
    {
        using var http = new HttpClient();
        var deadline = DateTime.UtcNow.AddSeconds(15);
        double value;
        do
        {
            var text = await http.GetStringAsync(gateway.Http("/_sluice/metrics"));
            var match = Regex.Match(text, $$"""^sluice_policy_rate_limit_budgets\{[^}]*policy="{{policy}}"[^}]*\} (\S+)""", RegexOptions.Multiline);
            value = match.Success ? double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture) : double.NaN;
            if (value == expected)
            {
                return value;
            }

            await Task.Delay(200);
        }
        while (DateTime.UtcNow < deadline);

        return value;
    }
}
