using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Hardening;

/// <summary>
/// Hostile JSON against the policies that read it, through the real gateway process: a value that would crash the
/// validator kills a child process (a failed test), not the test host.
/// </summary>
public class JsonPolicyHardeningTests
{
    // Numbers, strings and nestings at the extremes of what JSON text can say.
    private static readonly string[] s_extremeValues =
    [
        "1e9999999", "1e-999999999", "-1e9999999", "1E+400", "1e-400", "1e4294967296", "1e-4294967297", "1e0000000000000000001",
        new string('9', 400), "-" + new string('1', 400), "0." + new string('0', 398) + "1", "-0", "0e0", "-0.0e-0", "1.5e-9999999",
        "123456789012345678901234567890.5", "1e300", "1.7976931348623157e308", "5e-324", "0.1", "3",
        "\"" + new string('a', 40) + "!\"", "\"" + new string('a', 300_000) + "\"", "\"\\udc00\"", "\"\\ud800\\udc00\"", "\"\uFEFF\"",
        "\"2020-01-01T00:00:00" + new string('0', 100_000) + "Z\"",
        new string('[', 990) + "1" + new string(']', 990),
        "[" + string.Join(',', Enumerable.Repeat("1e9999999", 2_000)) + "]",
        "[" + string.Join(',', Enumerable.Range(0, 20_000)) + "]",
        "{\"" + new string('k', 100_000) + "\":1}",
    ];

    // One schema per keyword whose cost can depend on the size of a number, a string or a nesting.
    private static readonly Dictionary<string, string> s_keywordSchemas = new()
    {
        ["multipleOf-1"] = """{"properties":{"v":{"multipleOf":1}}}""",
        ["multipleOf-001"] = """{"properties":{"v":{"multipleOf":0.01}}}""",
        ["multipleOf-big"] = """{"properties":{"v":{"multipleOf":1e-30}}}""",
        ["minimum"] = """{"properties":{"v":{"minimum":-10}}}""",
        ["maximum"] = """{"properties":{"v":{"maximum":10}}}""",
        ["exclusive"] = """{"properties":{"v":{"exclusiveMinimum":-1e300,"exclusiveMaximum":1e300}}}""",
        ["integer"] = """{"properties":{"v":{"type":"integer"}}}""",
        ["enum"] = """{"properties":{"v":{"enum":[1,0.5,"x",[1],{"a":1}]}}}""",
        ["const"] = """{"properties":{"v":{"const":1e300}}}""",
        ["uniqueItems"] = """{"properties":{"v":{"uniqueItems":true}}}""",
        ["lengths"] = """{"properties":{"v":{"minLength":2,"maxLength":1000}}}""",
        ["pattern"] = """{"properties":{"v":{"pattern":"^(a+)+$"}}}""",
        ["patternProperties"] = """{"patternProperties":{"^(k+)+$":{"type":"string"}},"properties":{"v":{}}}""",
        ["format"] = """{"properties":{"v":{"format":"date-time"}}}""",
        ["formats"] = """{"properties":{"v":{"allOf":[{"format":"regex"},{"format":"email"},{"format":"hostname"},{"format":"uri"},{"format":"ipv6"},{"format":"duration"}]}}}""",
        ["meta-schema"] = """{"$ref":"https://json-schema.org/draft/2020-12/schema"}""",
        ["counts"] = """{"properties":{"v":{"minItems":1,"maxItems":5,"contains":{"type":"number","minimum":0},"minContains":1}}}""",
        ["dependent"] = """{"dependentRequired":{"v":["w"]},"dependentSchemas":{"v":{"properties":{"v":{"maxLength":3}}}}}""",
        ["propertyNames"] = """{"propertyNames":{"maxLength":50}}""",
        ["recursive"] = """{"$ref":"#/$defs/n","$defs":{"n":{"type":["object","array","number","string"],"items":{"$ref":"#/$defs/n"},"additionalProperties":{"$ref":"#/$defs/n"}}}}""",
    };

    [Fact]
    public async Task JsonSchema_MultipleOfWithAHugeExponent_IsA400_AndTheProcessLives()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write("""
            {
              "routes": [
                { "path": "/one", "handler": { "type": "echo" }, "inbound": ["one"] },
                { "path": "/cent", "handler": { "type": "echo" }, "inbound": ["cent"] },
                { "path": "/max", "handler": { "type": "echo" }, "inbound": ["max"] },
              ],
              "policies": {
                "one": { "type": "json-schema", "options": { "schema": { "properties": { "n": { "multipleOf": 1 } } }, "action": "reply" } },
                "cent": { "type": "json-schema", "options": { "schema": { "properties": { "n": { "multipleOf": 0.01 } } }, "action": "reply" } },
                "max": { "type": "json-schema", "options": { "schema": { "properties": { "n": { "maximum": 10 } } }, "action": "reply" } },
              },
            }
            """);
        await using var gateway = await GatewayProcess.StartAsync(path);
        foreach (var route in new[] { "/one", "/cent" })
        {
            using var client = await WebSocketClient.ConnectAsync(gateway.Ws(route));
            foreach (var number in new[] { "1e9999999", "1e-999999999", "-1e9999999" })
            {
                await client.SendTextAsync($$"""{"n":{{number}}}""");
                var answer = await client.ReceiveTextAsync();
                Assert.Equal(400, Status(answer));
                Assert.Contains("out of the range", answer, StringComparison.Ordinal);
            }

            await client.SendTextAsync("""{"n":3}""");
            Assert.Equal("""{"n":3}""", await client.ReceiveTextAsync());
        }

        // An exponent past int's range wrapped in JsonSchema.Net and compared as 1: it passed a maximum of 10.
        using var max = await WebSocketClient.ConnectAsync(gateway.Ws("/max"));
        await max.SendTextAsync("""{"n":1e4294967296}""");
        Assert.Equal(400, Status(await max.ReceiveTextAsync()));
        Assert.False(gateway.HasExited, gateway.Error);
    }

    [Fact]
    public async Task JsonSchema_EveryKeyword_WithExtremeValues_AnswersEchoOr400_AndTheProcessLives()
    {
        using var folder = new ConfigFolder();
        var routes = string.Join(",\n", s_keywordSchemas.Keys.Select(k => $$"""{ "path": "/{{k}}", "handler": { "type": "echo" }, "inbound": ["{{k}}"] }"""));
        var policies = string.Join(",\n", s_keywordSchemas.Select(p => $$"""
            "{{p.Key}}": { "type": "json-schema", "options": { "schema": {{p.Value}}, "action": "reply" } }
            """));
        var path = folder.Write($$"""{ "routes": [{{routes}}], "policies": { {{policies}} } }""");
        await using var gateway = await GatewayProcess.StartAsync(path);

        var outcomes = new List<string>();
        foreach (var keyword in s_keywordSchemas.Keys)
        {
            using var client = await WebSocketClient.ConnectAsync(gateway.Ws("/" + keyword), o => o.KeepAliveInterval = TimeSpan.Zero);
            foreach (var value in s_extremeValues)
            {
                foreach (var message in new[] { $$"""{"v":{{value}}}""", $$"""{"v":[{{value}},{{value}}],"w":1}""" })
                {
                    await client.SendTextAsync(message);
                    string answer;
                    try
                    {
                        answer = await client.ReceiveTextAsync(TimeSpan.FromSeconds(30));
                    }
                    catch (OperationCanceledException)
                    {
                        throw new TimeoutException($"{keyword} with {Head(value)}: no answer in 30 s");
                    }

                    Assert.False(gateway.HasExited, $"{keyword} with {Head(value)}: the gateway exited.\n{Head(gateway.Error, 2000)}");
                    if (answer != message)
                    {
                        // Anything but the echo must be the policy's reply: 400, with a short message.
                        Assert.True(Status(answer) == 400, $"{keyword} with {Head(value)}: {Head(answer)}");
                        Assert.True(answer.Length <= 4096, $"{keyword} with {Head(value)}: a reply of {answer.Length} characters");
                    }

                    outcomes.Add($"{keyword} {Head(value, 20)} {(answer == message ? "echo" : Head(answer, 160))}");
                }
            }

            // The documented rule: a number out of range is invalid for every keyword that reads numbers by value.
            if (keyword is "multipleOf-1" or "multipleOf-001" or "minimum" or "maximum" or "integer" or "enum")
            {
                foreach (var number in new[] { "1e9999999", "1e-999999999", "1E+401", new string('9', 41) })
                {
                    await client.SendTextAsync($$"""{"v":{{number}}}""");
                    Assert.Contains(SchemaOutOfRange, await client.ReceiveTextAsync(), StringComparison.Ordinal);
                }
            }
        }

        // A backtracking pattern is stopped by the match timeout: 400, not a thread held for minutes.
        using var pattern = await WebSocketClient.ConnectAsync(gateway.Ws("/pattern"));
        await pattern.SendTextAsync("{\"v\":\"" + new string('a', 40) + "!\"}");
        Assert.Contains("too long to match", await pattern.ReceiveTextAsync(TimeSpan.FromSeconds(30)), StringComparison.Ordinal);
        Assert.False(gateway.HasExited, gateway.Error);
    }

    [Fact]
    public async Task JsonSchema_ErrorReply_IsCappedAt4KiB_WhateverTheMessage()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write("""
            {
              "routes": [ { "path": "/s", "handler": { "type": "echo" }, "inbound": ["schema"] } ],
              "policies": {
                "schema": { "type": "json-schema", "options": { "schema": {
                  "properties": { "list": { "uniqueItems": true }, "e": { "enum": ["a"] } },
                  "additionalProperties": { "type": "number" } }, "action": "reply" } },
              },
            }
            """);
        await using var gateway = await GatewayProcess.StartAsync(path);
        using var client = await WebSocketClient.ConnectAsync(gateway.Ws("/s"));

        // 100,000 equal items: JsonSchema.Net lists every duplicate pair (1.39 MB for a 0.8 MB message before).
        var duplicates = "{\"list\":[" + string.Join(',', Enumerable.Repeat("1", 100_000)) + "]}";
        var longName = "{\"" + new string('\u00e9', 200_000) + "\":\"not a number\"}";
        var longValue = "{\"e\":\"\\\"\\u0001" + new string('x', 500_000) + "\"}";
        foreach (var message in new[] { duplicates, longName, longValue })
        {
            await client.SendTextAsync(message);
            var answer = await client.ReceiveTextAsync();
            Assert.Equal(400, Status(answer));
            Assert.True(Encoding.UTF8.GetByteCount(answer) <= 4096, $"a reply of {Encoding.UTF8.GetByteCount(answer)} bytes: {Head(answer)}");
        }
    }

    [Fact]
    public async Task JsonRedact_NearJsonItCannotParse_IsDropped_AndCommentsTrailingCommasAndBomAreRedacted()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write("""
            {
              "routes": [
                { "path": "/strict", "handler": { "type": "echo" }, "inbound": ["redact"] },
                { "path": "/lenient", "handler": { "type": "echo" }, "inbound": ["redact-pass"] },
              ],
              "policies": {
                "redact": { "type": "json-redact", "options": { "paths": ["/password"] } },
                "redact-pass": { "type": "json-redact", "options": { "paths": ["/password"], "unparsable": "pass" } },
              },
            }
            """);
        await using var gateway = await GatewayProcess.StartAsync(path);
        using var strict = await WebSocketClient.ConnectAsync(gateway.Ws("/strict"));
        using var lenient = await WebSocketClient.ConnectAsync(gateway.Ws("/lenient"));

        string[] unparsable =
        [
            """{"password":"x", "n": NaN}""",
            """{"password":"x", "n": -Infinity}""",
            "  \t[{\"password\":\"x\"}, NaN]",
            "\uFEFF{\"password\":\"x\",\"n\":NaN}",
            new string('[', 1001) + "{\"password\":\"x\"}" + new string(']', 1001),
            """{"password":"x", """,
        ];
        foreach (var message in unparsable)
        {
            await strict.SendTextAsync(message);
            await strict.SendTextAsync("""{"next":1}""");
            Assert.Equal("""{"next":1}""", await strict.ReceiveTextAsync());

            await lenient.SendTextAsync(message);
            Assert.Equal(message, await lenient.ReceiveTextAsync());
        }

        // What a lenient reader takes for JSON is read, so redacted, on both routes.
        string[] readable =
        [
            """{"password":"x", /* a comment */ "n":1}""",
            "{\"password\":\"x\", // to the end of the line\n \"n\":1}",
            """{"password":"x", "n":1,}""",
            "\uFEFF{\"password\":\"x\",\"n\":1}",
        ];
        foreach (var client in new[] { strict, lenient })
        {
            foreach (var message in readable)
            {
                await client.SendTextAsync(message);
                Assert.Equal("""{"n":1}""", await client.ReceiveTextAsync());
            }

            // Text that is not near-JSON still passes unchanged.
            await client.SendTextAsync("password=x");
            Assert.Equal("password=x", await client.ReceiveTextAsync());
        }

        // Counted as drops of the policy, and logged without the payload.
        using var http = new HttpClient();
        var metrics = await http.GetStringAsync(gateway.Http("/_sluice/metrics"));
        var dropped = metrics.Split('\n').Single(l => l.StartsWith("sluice_policy_outcomes_total", StringComparison.Ordinal) && l.Contains("policy=\"redact\"", StringComparison.Ordinal) && l.Contains("outcome=\"dropped\"", StringComparison.Ordinal));
        Assert.Equal(unparsable.Length.ToString(System.Globalization.CultureInfo.InvariantCulture), dropped[(dropped.LastIndexOf('}') + 1)..].Trim().Split(' ')[0]);
        Assert.DoesNotContain("\"password\":\"x\"", gateway.Output + gateway.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task JsonRedact_UnparsableOption_IsValidated_WithItsPath()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write("""
            {
              "routes": [ { "path": "/s", "handler": { "type": "echo" }, "inbound": ["redact"] } ],
              "policies": { "redact": { "type": "json-redact", "options": { "paths": ["/password"], "unparsable": "ignore" } } },
            }
            """);
        var (exitCode, output, error) = await GatewayProcess.RunAsync("--check", "--config", path);
        Assert.Equal(1, exitCode);
        Assert.Contains("policies.redact.options.unparsable", output + error, StringComparison.Ordinal);
    }

    private const string SchemaOutOfRange = "out of the range the schema can check";

    private static int Status(string answer)
    {
        using var document = JsonDocument.Parse(answer);
        return document.RootElement.GetProperty("error").GetProperty("status").GetInt32();
    }

    private static string Head(string text, int length = 80) => text.Length <= length ? text : text[..length] + "…";
}
