using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Hardening;

/// <summary>
/// Client input that made a JSON policy throw (a lone surrogate, an exponent beyond int, JSON deeper than the script
/// engine reads) and near-JSON that slipped past json-filter and json-redact, through the real gateway process.
/// </summary>
public class JsonPolicyHostileInputTests
{
    // Not JSON: every policy here passes it unchanged.
    private const string Sentinel = "sentinel";

    [Fact]
    public async Task LoneSurrogatesHugeExponentsAndDeepJson_NeverFailAPolicy_AndEachMessageGetsItsOutcome()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write("""
            {
              "routes": [
                { "path": "/log", "handler": { "type": "echo" }, "inbound": ["log"] },
                { "path": "/transform", "handler": { "type": "echo" }, "inbound": ["transform"] },
                { "path": "/key", "handler": { "type": "echo" }, "inbound": ["key"] },
                { "path": "/when", "handler": { "type": "echo" }, "inbound": ["when"] },
                { "path": "/filter", "handler": { "type": "echo" }, "inbound": ["filter"] },
                { "path": "/script", "handler": { "type": "echo" }, "inbound": ["script"] },
                { "path": "/schema", "handler": { "type": "echo" }, "inbound": ["schema"] },
              ],
              "policies": {
                "log": { "type": "log", "options": { "redact": ["/password"] } },
                "transform": { "type": "json-transform", "options": { "set": { "/seen": true } } },
                "key": { "type": "rate-limit", "options": { "permits": 1000, "perSeconds": 1, "key": "/v", "action": "reply" } },
                "when": { "type": "json-transform", "when": { "path": "/v", "in": [1, "x"] }, "options": { "set": { "/seen": true } } },
                "filter": { "type": "json-filter", "options": { "path": "/type", "in": ["internal", 1] } },
                "script": { "type": "script", "options": { "source": "(message) => message", "json": true } },
                "schema": { "type": "json-schema", "options": { "schema": { "type": "object" } } },
              },
            }
            """);
        await using var gateway = await GatewayProcess.StartAsync(path);

        (string Route, string Message, bool Forwarded)[] cases =
        [
            ("/log", """{"password":"x","f":"\udc00" /*c*/}""", true),
            ("/log", """{"password":"x","\ud800":1,}""", true),
            ("/log", """{"password":"x","f":"\udc00"}""", true),
            ("/transform", """{"f":"\udc00" /*c*/}""", true),
            ("/transform", """{"f":"\udc00"}""", true),
            ("/key", """{"v":"\udc00"}""", true),
            ("/key", """{"v":"a\ud800b"}""", true),
            ("/when", """{"v":"\udc00"}""", true),
            ("/when", """{"v":1e4294967296}""", true),
            ("/when", """{"v":1,"f":"\udc00",}""", true),
            ("/filter", """{"type":"\udc00"}""", true),
            ("/filter", """{"type":1e-4294967297}""", true),
            ("/script", new string('[', 100) + new string(']', 100), false),
        ];
        foreach (var (route, message, forwarded) in cases)
        {
            using var client = await WebSocketClient.ConnectAsync(gateway.Ws(route));
            await client.SendTextAsync(message);
            await client.SendTextAsync(Sentinel);
            if (forwarded)
            {
                Assert.Equal(message, await client.ReceiveTextAsync());
            }

            Assert.Equal(Sentinel, await client.ReceiveTextAsync());
        }

        // json-schema says why it refuses a lone surrogate in a name, however many names the object has.
        using (var schema = await WebSocketClient.ConnectAsync(gateway.Ws("/schema")))
        {
            foreach (var message in new[] { """{"\udc00":1}""", """{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"\ud800":1}""" })
            {
                await schema.SendTextAsync(message);
                Assert.Contains("not valid Unicode", await schema.ReceiveTextAsync(), StringComparison.Ordinal);
            }
        }

        // No policy failed (event 200, an error with a stack trace for each message).
        Assert.DoesNotContain(" failed on ", gateway.Output + gateway.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task JsonFilter_UnparsableDrop_StopsNearJsonItCannotRead_AndLeadingCommentsAreRead()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write("""
            {
              "routes": [
                { "path": "/deny", "handler": { "type": "echo" }, "inbound": ["deny"] },
                { "path": "/default", "handler": { "type": "echo" }, "inbound": ["default"] },
                { "path": "/redact", "handler": { "type": "echo" }, "inbound": ["redact"] },
              ],
              "policies": {
                "deny": { "type": "json-filter", "options": { "path": "/type", "equals": "internal", "unparsable": "drop" } },
                "default": { "type": "json-filter", "options": { "path": "/type", "equals": "internal" } },
                "redact": { "type": "json-redact", "options": { "paths": ["/password"] } },
              },
            }
            """);
        await using var gateway = await GatewayProcess.StartAsync(path);
        using var deny = await WebSocketClient.ConnectAsync(gateway.Ws("/deny"));
        using var fallback = await WebSocketClient.ConnectAsync(gateway.Ws("/default"));
        using var redact = await WebSocketClient.ConnectAsync(gateway.Ws("/redact"));

        const string Hidden = """{"type":"internal","n":NaN}""";
        await deny.SendTextAsync(Hidden);
        await deny.SendTextAsync(Sentinel);
        Assert.Equal(Sentinel, await deny.ReceiveTextAsync());

        // The contract's default: near-JSON passes a json-filter unchanged.
        await fallback.SendTextAsync(Hidden);
        Assert.Equal(Hidden, await fallback.ReceiveTextAsync());

        // A leading comment no longer hides the object.
        foreach (var client in new[] { deny, fallback })
        {
            await client.SendTextAsync("// c\n/* d */ {\"type\":\"internal\"}");
            await client.SendTextAsync(Sentinel);
            Assert.Equal(Sentinel, await client.ReceiveTextAsync());
        }

        await redact.SendTextAsync("/* c */ {\"password\":\"x\",\"n\":1}");
        Assert.Equal("""{"n":1}""", await redact.ReceiveTextAsync());
        await redact.SendTextAsync("// c\n{\"password\":\"x\",\"n\":NaN}");
        await redact.SendTextAsync(Sentinel);
        Assert.Equal(Sentinel, await redact.ReceiveTextAsync());
    }

    [Fact]
    public async Task JsonFilter_UnparsableOption_IsValidated_WithItsPath()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write("""
            {
              "routes": [ { "path": "/s", "handler": { "type": "echo" }, "inbound": ["f"] } ],
              "policies": { "f": { "type": "json-filter", "options": { "path": "/type", "equals": "x", "unparsable": "ignore" } } },
            }
            """);
        var (exitCode, output, error) = await GatewayProcess.RunAsync("--check", "--config", path);
        Assert.Equal(1, exitCode);
        Assert.Contains("policies.f.options.unparsable", output + error, StringComparison.Ordinal);
    }
}
