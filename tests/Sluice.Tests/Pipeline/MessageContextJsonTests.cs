using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Sluice.Tests.Infrastructure;

namespace Sluice.Tests.Pipeline;

/// <summary>The shared parse: readers and writers of JSON in one chain see one consistent message.</summary>
public class MessageContextJsonTests
{
    [Fact]
    public async Task ReadersSeeEarlierChanges_AndTheMessageIsWrittenBackOnce()
    {
        var observations = new List<string>();
        await using var server = await TestServer.StartAsync(app => app.MapWebSocket("/json", ws =>
        {
            ws.Use(ctx =>
            {
                observations.Add(ctx.TryGetJsonElement(out var e) && e.TryGetProperty("password", out _) ? "has password" : "no password");
                return true;
            }).InboundOnly();
            ws.Use(ctx =>
            {
                ((JsonObject)ctx.Json!).Remove("password");
                ctx.Json!["checked"] = true;
                ctx.MarkJsonModified();
                return true;
            }).InboundOnly();
            ws.Use(ctx =>
            {
                observations.Add(ctx.TryGetJsonElement(out var e) && e.TryGetProperty("password", out _) ? "has password" : "no password");
                observations.Add(ctx.Json!["checked"]!.GetValue<bool>() ? "checked" : "unchecked");
                return true;
            }).InboundOnly();
            ws.Use(ctx => !ctx.IsJson || ctx.Message.Text.Length > 0).InboundOnly();
            ws.OnMessage((m, c) => m.Text);
        }));
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/json"));

        await client.SendTextAsync("""{"user":"ann","password":"hunter2","note":"héllo"}""");

        Assert.Equal("""{"user":"ann","note":"héllo","checked":true}""", await client.ReceiveTextAsync());
        Assert.Equal(["has password", "no password", "checked"], observations);
    }

    [Fact]
    public async Task NonJsonText_AndBinary_AreNotJson_AndPassUntouched()
    {
        await using var checker = await TestServer.StartAsync(app => app.MapWebSocket("/check", ws =>
            ws.OnMessage((MessageContext ctx) => new ValueTask<object?>($"{ctx.IsJson}:{ctx.Json is null}:{ctx.TryGetJsonElement(out _)}"))));
        using var client = await WebSocketClient.ConnectAsync(checker.WebSocketUri("/check"));

        await client.SendTextAsync("not json {");
        Assert.Equal("False:True:False", await client.ReceiveTextAsync());
        await client.SendBinaryAsync("""{"looks":"like json"}"""u8.ToArray());
        Assert.Equal("False:True:False", await client.ReceiveTextAsync());
        await client.SendTextAsync(new string('[', 10_000) + new string(']', 10_000));
        Assert.Equal("False:True:False", await client.ReceiveTextAsync());
        await client.SendTextAsync("null");
        Assert.Equal("True:True:True", await client.ReceiveTextAsync());
    }
}
