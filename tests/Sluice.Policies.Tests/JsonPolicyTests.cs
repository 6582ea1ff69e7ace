using System.Net.WebSockets;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Sluice.Tests.Infrastructure;

namespace Sluice.Policies.Tests;

/// <summary>json-redact, json-transform, timer, log and script, hosted and proxied.</summary>
public class JsonPolicyTests
{
    [Theory]
    [InlineData(Mode.Host)]
    [InlineData(Mode.Proxy)]
    public async Task Redact_RemovesOrMasks_IntoArrays_AndLeavesOtherMessagesUntouched(Mode mode)
    {
        await using var harness = await PolicyHarness.StartAsync(p =>
        {
            p.UsePolicy(new JsonRedactPolicy("/password", "/card/number", "/items/0/secret")).InboundOnly();
            p.UsePolicy(new JsonRedactPolicy(new JsonRedactPolicyOptions { Paths = ["/token", "/absent"], Mode = JsonRedactMode.Mask })).OutboundOnly();
        });
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(mode));

        await client.SendTextAsync("""{"user":"ann","password":"p","card":{"number":"4111","exp":"12/30"},"items":[{"secret":1,"k":2},{"secret":3}],"token":"t"}""");
        Assert.Equal("""{"user":"ann","card":{"exp":"12/30"},"items":[{"k":2},{"secret":3}],"token":"***"}""", await client.ReceiveTextAsync());

        // A redacted message keeps the rest of its text as it came: number spelling, escapes, a nested value's spacing.
        await client.SendTextAsync("""{"n": 1.50, "password": "p", "e": "\u00e9", "o": { "k" : [1, 2] }}""");
        Assert.Equal("""{"n": 1.50,"e": "\u00e9","o": { "k" : [1, 2] }}""", await client.ReceiveTextAsync());

        // No redacted field: the message goes through byte for byte (whitespace and number spelling kept).
        const string untouched = """{ "user" : "bob", "n": 1.50 }""";
        await client.SendTextAsync(untouched);
        Assert.Equal(untouched, await client.ReceiveTextAsync());
        await client.SendTextAsync("password=not-json");
        Assert.Equal("password=not-json", await client.ReceiveTextAsync());
        await client.SendBinaryAsync("""{"password":"p"}"""u8.ToArray());
        Assert.Equal("""{"password":"p"}"""u8.ToArray(), (await client.ReceiveMessageAsync()).Payload);
        if (mode == Mode.Proxy)
        {
            Assert.DoesNotContain(harness.BackendReceived, m => m.Contains("\"p\"", StringComparison.Ordinal) && m.StartsWith('{'));
        }
    }

    [Theory]
    [InlineData("""{ "password" : 1 }""", """{}""")]
    [InlineData("""{"x":1 , "password":2}""", """{"x":1}""")]
    [InlineData("""{"password":2 , "x":1}""", """{"x":1}""")]
    [InlineData("""{"pass\u0077ord":"s","x":"\u0041"}""", """{"x":"\u0041"}""")]
    [InlineData("""{ "a" : { "b" : 1 , "c" : [ 1, 2 ] } }""", """{"a" : {"c" : [ 1, 2 ]}}""")]
    [InlineData("""{"items":[ {"k":1} , 2 , 3 ]}""", """{"items":[{"k":1},3]}""")]
    [InlineData("""{"":1,"y":2}""", """{"y":2}""")]
    [InlineData("""{"password":1,"password":2,"z":0}""", """{"z":0}""")]
    [InlineData("""{ "token" : "t" , "n" : 1e2 }""", """{"token" : "***","n" : 1e2}""")]
    [InlineData("""[ {"password":1} ]""", """[ {"password":1} ]""")]
    public async Task Redact_CopiesTheTextAroundTheRedactedMembers(string sent, string expected)
    {
        // Inbound removes, outbound masks; "/" is the member with the empty name, "/items/1" the second item.
        await using var harness = await PolicyHarness.StartAsync(p =>
        {
            p.UsePolicy(new JsonRedactPolicy("/password", "/a/b", "/items/1", "/")).InboundOnly();
            p.UsePolicy(new JsonRedactPolicy(new JsonRedactPolicyOptions { Paths = ["/token"], Mode = JsonRedactMode.Mask })).OutboundOnly();
        });
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(Mode.Proxy));

        await client.SendTextAsync(sent);

        Assert.Equal(expected, await client.ReceiveTextAsync());
    }

    [Theory]
    [InlineData(Mode.Host)]
    [InlineData(Mode.Proxy)]
    public async Task Transform_RenamesRemovesAndSets_CreatingMembersButNotParents(Mode mode)
    {
        await using var harness = await PolicyHarness.StartAsync(p => p.UsePolicy(new JsonTransformPolicy(new JsonTransformPolicyOptions
        {
            Rename = new() { ["/msg"] = "/text", ["/a"] = "/missing/parent" },
            Remove = ["/debug"],
            Set = new() { ["/meta/via"] = JsonValue.Create("sluice"), ["/version"] = JsonValue.Create(2), ["/nope/x"] = JsonValue.Create(1) },
        })).InboundOnly());
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(mode));

        await client.SendTextAsync("""{"msg":"hi","debug":true,"meta":{},"a":1}""");

        Assert.Equal("""{"meta":{"via":"sluice"},"a":1,"text":"hi","version":2}""", await client.ReceiveTextAsync());
    }

    [Fact]
    public async Task Ordering_InboundListRunsInOrder_ATransformFeedsAFilter()
    {
        await using var harness = await PolicyHarness.StartAsync(p =>
        {
            p.UsePolicy(new JsonTransformPolicy(new JsonTransformPolicyOptions { Rename = new() { ["/kind"] = "/type" } })).InboundOnly();
            p.UsePolicy(new JsonFilterPolicy(new() { Path = "/type", EqualsValue = JsonValue.Create("internal") })).InboundOnly();
        });
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(Mode.Proxy));

        await client.SendTextAsync("""{"kind":"internal"}""");
        await client.SendTextAsync("""{"kind":"public"}""");

        Assert.Equal("""{"type":"public"}""", await client.ReceiveTextAsync());
        Assert.Equal(["""{"type":"public"}"""], harness.BackendReceived);
    }

    [Theory]
    [InlineData(Mode.Host)]
    [InlineData(Mode.Proxy)]
    public async Task Timer_StampsTimeInTheGateway_IntoOutboundJson(Mode mode)
    {
        await using var harness = await PolicyHarness.StartAsync(p =>
        {
            // Outbound runs in reverse order: the delay (added last) runs before the timer stamps.
            p.UsePolicy(new TimerPolicy(new() { Field = "/meta/gatewayMs" })).OutboundOnly();
            p.Use(async ctx =>
            {
                await Task.Delay(30);
                return true;
            }).OutboundOnly();
        });
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(mode));

        await client.SendTextAsync("""{"meta":{}}""");
        await client.SendTextAsync("plain text");

        using var stamped = JsonDocument.Parse(await client.ReceiveTextAsync());
        Assert.True(stamped.RootElement.GetProperty("meta").GetProperty("gatewayMs").GetDouble() >= 25);
        Assert.Equal("plain text", await client.ReceiveTextAsync());
    }

    [Fact]
    public async Task Log_WritesDirectionSizeRouteSubject_AndMasksRedactedFields()
    {
        await using var harness = await PolicyHarness.StartAsync((p, services) =>
        {
            p.UseUpgrade(ctx =>
            {
                ctx.Subject = "ann";
                return UpgradeResult.Continue();
            });
            p.UsePolicy(new LogPolicy(new() { Redact = ["/password"] }, services.GetRequiredService<ILoggerFactory>())).InboundOnly();
        });
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(Mode.Host));

        await client.SendTextAsync("""{"user":"ann","password":"hunter2"}""");
        await client.ReceiveTextAsync();

        var entry = await harness.Server.Logs.WaitForAsync(e => e.EventId.Id == 600);
        Assert.Equal(LogLevel.Information, entry.Level);
        Assert.Contains("Inbound text message, 35 bytes, on /host from ann", entry.Message, StringComparison.Ordinal);
        Assert.Contains("\"password\":\"***\"", entry.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(harness.Server.Logs.Entries, e => e.Message.Contains("hunter2", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Log_WithSampleZero_LogsNothing()
    {
        await using var harness = await PolicyHarness.StartAsync((p, services) => p.UsePolicy(new LogPolicy(new() { Sample = 0 }, services.GetRequiredService<ILoggerFactory>())).InboundOnly());
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(Mode.Host));

        for (var i = 0; i < 20; i++)
        {
            await client.SendTextAsync("x");
            await client.ReceiveTextAsync();
        }

        Assert.DoesNotContain(harness.Server.Logs.Entries, e => e.EventId.Id == 600);
    }

    [Theory]
    [InlineData(Mode.Host)]
    [InlineData(Mode.Proxy)]
    public async Task Script_TransformsDropsAndSeesContext(Mode mode)
    {
        const string script = """
            (message, context) => {
              if (typeof message === 'string') return message.toUpperCase();
              if (message instanceof ArrayBuffer) return message;
              if (message.type === 'secret') return undefined;
              message.seen = context.direction + ' ' + context.route;
              return message;
            }
            """;
        await using var harness = await PolicyHarness.StartAsync(p => p.UsePolicy(new ScriptPolicy(new() { Source = script, Json = true })).InboundOnly());
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(mode));

        await client.SendTextAsync("""{"type":"secret"}""");
        await client.SendTextAsync("""{"type":"chat"}""");
        Assert.Equal($$"""{"type":"chat","seen":"inbound /{{mode.ToString().ToLowerInvariant()}}"}""", await client.ReceiveTextAsync());
        await client.SendTextAsync("hello");
        Assert.Equal("HELLO", await client.ReceiveTextAsync());
        await client.SendBinaryAsync([1, 2, 3]);
        Assert.Equal([1, 2, 3], (await client.ReceiveMessageAsync()).Payload);
    }

    [Theory]
    [InlineData("throw new Error('boom')", "boom")]
    [InlineData("while (true) {}", "")]
    [InlineData("let a = []; while (true) { a.push(new Array(100000).fill(1)); }", "")]
    public async Task Script_ThatThrowsLoopsOrAllocatesWithoutEnd_DropsItsMessage_AndTheConnectionLives(string body, string logged)
    {
        var script = $$"""
            function policy(message, context) {
              if (message === 'bad') { {{body}} }
              return message;
            }
            """;
        await using var harness = await PolicyHarness.StartAsync(p => p.UsePolicy(new ScriptPolicy(new() { Source = script, TimeoutMs = 200, MemoryLimitBytes = 8 * 1024 * 1024 }, "js")).InboundOnly());
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(Mode.Host));

        await client.SendTextAsync("bad");
        await client.SendTextAsync("good");

        Assert.Equal("good", await client.ReceiveTextAsync());
        Assert.Equal(WebSocketState.Open, client.State);
        var failure = await harness.Server.Logs.WaitForAsync(e => e.EventId.Id == 200);
        Assert.Contains("js", failure.Message, StringComparison.Ordinal);
        Assert.Contains(logged, failure.Exception!.Message, StringComparison.Ordinal);
        await client.SendTextAsync("good again");
        Assert.Equal("good again", await client.ReceiveTextAsync());
    }

    [Fact]
    public void Script_ThatDoesNotCompileOrIsNotAFunction_IsAClearErrorAtCreation()
    {
        var syntax = Assert.Throws<PolicyConfigurationException>(() => new ScriptPolicy(new() { Source = "function (" }));
        var notFunction = Assert.Throws<PolicyConfigurationException>(() => new ScriptPolicy(new() { Source = "42" }));
        var missing = Assert.Throws<PolicyConfigurationException>(() => new ScriptPolicy(new() { File = "no-such.js" }));

        Assert.StartsWith("source: ", Assert.Single(syntax.Errors), StringComparison.Ordinal);
        Assert.Contains("must evaluate to a function", Assert.Single(notFunction.Errors), StringComparison.Ordinal);
        Assert.StartsWith("file: 'no-such.js' does not exist", Assert.Single(missing.Errors), StringComparison.Ordinal);
    }
}
