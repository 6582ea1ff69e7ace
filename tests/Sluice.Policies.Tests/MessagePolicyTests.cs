using System.Net.WebSockets;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Time.Testing;
using Sluice.Tests.Infrastructure;

namespace Sluice.Policies.Tests;

/// <summary>size-limit, rate-limit, json-schema and json-filter, each outcome, hosted and proxied.</summary>
public class MessagePolicyTests
{
    private static async Task<(int Status, string Policy, string Message)> ReadErrorAsync(ClientWebSocket client)
    {
        using var reply = JsonDocument.Parse(await client.ReceiveTextAsync());
        var error = reply.RootElement.GetProperty("error");
        return (error.GetProperty("status").GetInt32(), error.GetProperty("policy").GetString()!, error.GetProperty("message").GetString()!);
    }

    [Theory]
    [InlineData(Mode.Host)]
    [InlineData(Mode.Proxy)]
    public async Task SizeLimit_ExactlyMaxBytesPasses_OneMoreIsRejectedByEachAction(Mode mode)
    {
        await using var harness = await PolicyHarness.StartAsync(p =>
        {
            p.UsePolicy(new SizeLimitPolicy(new() { MaxBytes = 10, Action = PolicyAction.Reply }, "max-10")).When(c => c.Message.Text.StartsWith('r')).InboundOnly();
            p.UsePolicy(new SizeLimitPolicy(new() { MaxBytes = 10, Action = PolicyAction.Drop })).When(c => c.Message.Text.StartsWith('d')).InboundOnly();
            p.UsePolicy(new SizeLimitPolicy(new() { MaxBytes = 10 })).InboundOnly();
        });
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(mode));

        await client.SendTextAsync("r123456789");
        Assert.Equal("r123456789", await client.ReceiveTextAsync());
        await client.SendTextAsync("r1234567890");
        Assert.Equal((413, "max-10", "message too large: 11 bytes, the limit is 10"), await ReadErrorAsync(client));
        await client.SendTextAsync("d1234567890");
        await client.SendTextAsync("c12345678");
        Assert.Equal("c12345678", await client.ReceiveTextAsync());

        await client.SendTextAsync("c1234567890");
        Assert.Equal(WebSocketCloseStatus.MessageTooBig, (await client.ReceiveCloseAsync()).Status);
        if (mode == Mode.Proxy)
        {
            await WaitUntilAsync(() => harness.BackendCloses.Count == 1);
            Assert.Equal(WebSocketCloseStatus.MessageTooBig, harness.BackendCloses[0].Status);
            Assert.DoesNotContain("d1234567890", harness.BackendReceived);
        }
    }

    [Theory]
    [InlineData(Mode.Host)]
    [InlineData(Mode.Proxy)]
    public async Task RateLimit_ABurstExactlyAtTheLimitPasses_TheNextIsRejected_ThenRefills(Mode mode)
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var harness = await PolicyHarness.StartAsync(p =>
            p.UsePolicy(new RateLimitPolicy(new() { Permits = 3, PerSeconds = 1, Action = PolicyAction.Reply }, "per-user-rate", time)).InboundOnly());
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(mode));
        using var other = await WebSocketClient.ConnectAsync(harness.Uri(mode));

        for (var i = 0; i < 4; i++)
        {
            await client.SendTextAsync($"m{i}");
        }

        // In proxy mode the error comes straight back while the echoes go round the backend: compare as a set.
        var received = new List<string>();
        for (var i = 0; i < 4; i++)
        {
            received.Add(await client.ReceiveTextAsync());
        }

        Assert.Equal(["m0", "m1", "m2"], received.Where(r => r.StartsWith('m')));
        Assert.Equal("""{"error":{"policy":"per-user-rate","status":429,"message":"rate limit exceeded: 3 per 1 s"}}""", Assert.Single(received, r => r.StartsWith('{')));

        // Budgets are per connection by default.
        await other.SendTextAsync("other");
        Assert.Equal("other", await other.ReceiveTextAsync());

        time.Advance(TimeSpan.FromSeconds(1));
        await client.SendTextAsync("later");
        Assert.Equal("later", await client.ReceiveTextAsync());
    }

    [Fact]
    public async Task RateLimit_BySubjectAndKey_GivesEachUserABudgetPerAction()
    {
        await using var harness = await PolicyHarness.StartAsync(p =>
        {
            p.UseUpgrade(ctx =>
            {
                ctx.Subject = ctx.HttpContext.Request.Query["user"];
                return UpgradeResult.Continue();
            });
            p.UsePolicy(new RateLimitPolicy(new() { Permits = 1, PerSeconds = 60, PartitionBy = MessageRateLimitPartition.Subject, Key = "/action", Action = PolicyAction.Reply })).InboundOnly();
        });
        using var ann1 = await WebSocketClient.ConnectAsync(harness.Uri(Mode.Host, "?user=ann"));
        using var ann2 = await WebSocketClient.ConnectAsync(harness.Uri(Mode.Host, "?user=ann"));
        using var bob = await WebSocketClient.ConnectAsync(harness.Uri(Mode.Host, "?user=bob"));

        await ann1.SendTextAsync("""{"action":"send"}""");
        Assert.Equal("""{"action":"send"}""", await ann1.ReceiveTextAsync());
        await ann2.SendTextAsync("""{"action":"send"}""");
        Assert.Equal(429, (await ReadErrorAsync(ann2)).Status);
        await ann2.SendTextAsync("""{"action":"edit"}""");
        Assert.Equal("""{"action":"edit"}""", await ann2.ReceiveTextAsync());
        await bob.SendTextAsync("""{"action":"send"}""");
        Assert.Equal("""{"action":"send"}""", await bob.ReceiveTextAsync());
    }

    [Theory]
    [InlineData(Mode.Host)]
    [InlineData(Mode.Proxy)]
    public async Task JsonSchema_ValidPasses_InvalidNonJsonAndBinaryAreRejected(Mode mode)
    {
        var schema = JsonNode.Parse("""
            { "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
              "required": ["text"], "properties": { "text": { "type": "string", "maxLength": 5 } } }
            """);
        await using var harness = await PolicyHarness.StartAsync(p =>
            p.UsePolicy(new JsonSchemaPolicy(new() { Schema = schema, Action = PolicyAction.Reply }, "chat-schema")).InboundOnly());
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(mode));

        await client.SendTextAsync("""{"text":"hi"}""");
        Assert.Equal("""{"text":"hi"}""", await client.ReceiveTextAsync());

        await client.SendTextAsync("""{"text":"far too long"}""");
        var (status, policy, message) = await ReadErrorAsync(client);
        Assert.Equal((400, "chat-schema"), (status, policy));
        Assert.StartsWith("invalid message: /text: ", message, StringComparison.Ordinal);

        await client.SendTextAsync("not json");
        Assert.Equal("invalid message: not JSON", (await ReadErrorAsync(client)).Message);
        await client.SendBinaryAsync("""{"text":"hi"}"""u8.ToArray());
        Assert.Equal("invalid message: binary, not JSON", (await ReadErrorAsync(client)).Message);
    }

    [Fact]
    public async Task JsonSchema_CloseAction_Closes1007()
    {
        await using var harness = await PolicyHarness.StartAsync(p =>
            p.UsePolicy(new JsonSchemaPolicy(new() { Schema = JsonNode.Parse("""{"type":"object"}"""), Action = PolicyAction.Close })).InboundOnly());
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(Mode.Proxy));

        await client.SendTextAsync("[1,2]");

        Assert.Equal(WebSocketCloseStatus.InvalidPayloadData, (await client.ReceiveCloseAsync()).Status);
    }

    [Fact]
    public async Task JsonSchema_ANumberJsonSchemaNetCannotCompare_IsRejected_NotAFailure()
    {
        // Found by SchemaFastPathTests: JsonSchema.Net 8.0.5 throws comparing 1e300 with an enum of numbers.
        await using var harness = await PolicyHarness.StartAsync(p =>
            p.UsePolicy(new JsonSchemaPolicy(new() { Schema = JsonNode.Parse("""{"properties":{"n":{"enum":[1,"a"]}}}"""), Action = PolicyAction.Reply }, "numbers")).InboundOnly());
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(Mode.Host));

        await client.SendTextAsync("""{"n":1e300}""");

        var error = await ReadErrorAsync(client);
        Assert.Equal(400, error.Status);
        Assert.StartsWith("invalid message: a number is out of the range", error.Message, StringComparison.Ordinal);
        await client.SendTextAsync("""{"n":1}""");
        Assert.Equal("""{"n":1}""", await client.ReceiveTextAsync());
    }

    [Fact]
    public void JsonSchema_InvalidOrMissingSchemaFile_IsAClearErrorAtCreation()
    {
        var directory = Directory.CreateTempSubdirectory("sluice-schema").FullName;
        File.WriteAllText(Path.Combine(directory, "broken.json"), """{"type": 12}""");
        File.WriteAllText(Path.Combine(directory, "not-json.json"), """{"type": """);

        var missing = Assert.Throws<PolicyConfigurationException>(() => new JsonSchemaPolicy(new() { SchemaFile = "nope.json" }, "chat-schema", directory));
        var broken = Assert.Throws<PolicyConfigurationException>(() => new JsonSchemaPolicy(new() { SchemaFile = "broken.json" }, "chat-schema", directory));
        var notJson = Assert.Throws<PolicyConfigurationException>(() => new JsonSchemaPolicy(new() { SchemaFile = "not-json.json" }, "chat-schema", directory));

        Assert.StartsWith("schemaFile: 'nope.json' does not exist", Assert.Single(missing.Errors), StringComparison.Ordinal);
        Assert.StartsWith("schemaFile: not a valid JSON Schema", Assert.Single(broken.Errors), StringComparison.Ordinal);
        Assert.StartsWith("schemaFile: not a valid JSON Schema", Assert.Single(notJson.Errors), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(Mode.Host)]
    [InlineData(Mode.Proxy)]
    public async Task JsonFilter_EqualsInExists_WithEachAction(Mode mode)
    {
        await using var harness = await PolicyHarness.StartAsync(p =>
        {
            p.UsePolicy(new JsonFilterPolicy(new() { Path = "/type", In = [JsonValue.Create("internal"), JsonValue.Create("debug")] }, "drop-internal")).OutboundOnly();
            p.UsePolicy(new JsonFilterPolicy(new() { Path = "/admin", Exists = true, Action = PolicyAction.Reply }, "no-admin")).InboundOnly();
            p.UsePolicy(new JsonFilterPolicy(new() { Path = "/level", EqualsValue = JsonValue.Create(9), Action = PolicyAction.Close }, "no-nine")).InboundOnly();
        });
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(mode));

        await client.SendTextAsync("""{"type":"internal","n":1}""");
        await client.SendTextAsync("""{"type":"debug","n":2}""");
        await client.SendTextAsync("not json at all");
        Assert.Equal("not json at all", await client.ReceiveTextAsync());
        await client.SendTextAsync("""{"type":"chat","n":3}""");
        Assert.Equal("""{"type":"chat","n":3}""", await client.ReceiveTextAsync());

        await client.SendTextAsync("""{"admin":null}""");
        Assert.Equal((403, "no-admin", "message not allowed (/admin)"), await ReadErrorAsync(client));

        await client.SendTextAsync("""{"level":9.0}""");
        var (status, reason) = await client.ReceiveCloseAsync();
        Assert.Equal((WebSocketCloseStatus.PolicyViolation, "message not allowed (/level)"), (status, reason));
    }

    [Fact]
    public async Task When_ValidatesEachActionAgainstItsOwnSchema()
    {
        await using var harness = await PolicyHarness.StartAsync(p =>
        {
            p.UsePolicy(new JsonSchemaPolicy(new() { Schema = JsonNode.Parse("""{"required":["text"]}""") }, "send-schema"),
                new PolicyCondition { Path = "/action", EqualsValue = JsonValue.Create("send") }).InboundOnly();
            p.UsePolicy(new JsonSchemaPolicy(new() { Schema = JsonNode.Parse("""{"required":["id"]}""") }, "edit-schema"),
                new PolicyCondition { Path = "/action", In = [JsonValue.Create("edit"), JsonValue.Create("delete")] }).InboundOnly();
            p.UsePolicy(new SizeLimitPolicy(new() { MaxBytes = 3, Action = PolicyAction.Reply }, "tiny-binary"), new PolicyCondition { Opcode = MessageType.Binary }).InboundOnly();
        });
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(Mode.Proxy));

        await client.SendTextAsync("""{"action":"send","id":1}""");
        Assert.Equal("send-schema", (await ReadErrorAsync(client)).Policy);
        await client.SendTextAsync("""{"action":"delete","text":"x"}""");
        Assert.Equal("edit-schema", (await ReadErrorAsync(client)).Policy);
        await client.SendTextAsync("""{"action":"other","anything":true}""");
        Assert.Equal("""{"action":"other","anything":true}""", await client.ReceiveTextAsync());
        await client.SendBinaryAsync([1, 2, 3, 4]);
        Assert.Equal("tiny-binary", (await ReadErrorAsync(client)).Policy);
        await client.SendTextAsync("long text is not binary");
        Assert.Equal("long text is not binary", await client.ReceiveTextAsync());
    }

    internal static async Task WaitUntilAsync(Func<bool> condition)
    {
        var deadline = Environment.TickCount64 + 10_000;
        while (!condition())
        {
            Assert.True(Environment.TickCount64 < deadline, "timed out waiting");
            await Task.Delay(20);
        }
    }
}
