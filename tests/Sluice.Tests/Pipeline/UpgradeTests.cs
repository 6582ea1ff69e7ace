using System.Net;
using System.Net.WebSockets;
using Microsoft.AspNetCore.Builder;
using Sluice.Tests.Infrastructure;

namespace Sluice.Tests.Pipeline;

/// <summary>socketify-style upgrade middleware: sync and async steps that reject or pass data on.</summary>
public class UpgradeTests
{
    private sealed record User(string Name, string Greeting);

    private static void MapAuthenticated(WebApplication app) => app.MapWebSocket("/private", ws =>
    {
        // socketify's auth: async, returns the user or rejects.
        ws.UseUpgrade(async ctx =>
        {
            await Task.Yield();
            var token = ctx.HttpContext.Request.Headers.Authorization.ToString();
            return token == "Bearer good"
                ? UpgradeResult.Continue(new User("ann", "Hello"))
                : UpgradeResult.Reject(403, "not authorized");
        });

        // socketify's another_middie: sync, changes the data for the next step.
        ws.UseUpgrade(ctx =>
        {
            var user = (User)ctx.Data!;
            ctx.Subject = user.Name;
            ctx.Items["tier"] = "gold";
            return UpgradeResult.Continue(user with { Greeting = user.Greeting + " from another middie" });
        });

        // home receives the user.
        ws.OnMessage((m, c) => $"{((User)c.UpgradeData!).Greeting} ({c.Subject}, {c.Items["tier"]})");
    });

    [Fact]
    public async Task RejectingStep_AnswersWithStatusAndBody_AndNoWebSocket()
    {
        await using var server = await TestServer.StartAsync(MapAuthenticated);
        using var raw = await RawWebSocket.ConnectAsync(server.WebSocketUri("/private"));

        Assert.Equal(403, raw.StatusCode);
        Assert.DoesNotContain("Upgrade: websocket", raw.ResponseHead, StringComparison.OrdinalIgnoreCase);
        using var http = server.CreateHttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Get, "/private");
        request.Headers.Add("Connection", "Upgrade");
        request.Headers.Add("Upgrade", "websocket");
        request.Headers.Add("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
        request.Headers.Add("Sec-WebSocket-Version", "13");
        using var response = await http.SendAsync(request);
        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        Assert.Equal("not authorized\n", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Steps_PassDataToEachOther_AndIntoTheConnection()
    {
        await using var server = await TestServer.StartAsync(MapAuthenticated);
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/private"), o => o.SetRequestHeader("Authorization", "Bearer good"));

        await client.SendTextAsync("who am I?");

        Assert.Equal("Hello from another middie (ann, gold)", await client.ReceiveTextAsync());
    }

    private static UpgradeResult Fail() => throw new InvalidOperationException("step failed");

    [Fact]
    public async Task ThrowingStep_RejectsWith500_AndLogs()
    {
        await using var server = await TestServer.StartAsync(app => app.MapWebSocket("/broken", ws =>
        {
            ws.UseUpgrade(ctx => Fail());
            ws.OnMessage((m, c) => m);
        }));

        var error = await Assert.ThrowsAsync<WebSocketException>(() => WebSocketClient.ConnectAsync(server.WebSocketUri("/broken")));

        Assert.Contains("500", error.Message, StringComparison.Ordinal);
        await server.Logs.WaitForAsync(e => e.EventId.Id == 204);
    }
}
