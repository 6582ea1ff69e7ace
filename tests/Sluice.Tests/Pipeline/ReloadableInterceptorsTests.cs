using System.Net.WebSockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Sluice.Tests.Infrastructure;

namespace Sluice.Tests.Pipeline;

public class ReloadableInterceptorsTests
{
    [Fact]
    public async Task Reload_AppliesToTheNextMessageOfOpenConnections_WithoutDroppingThem()
    {
        var policies = new ReloadableInterceptors(p => p.Inbound(m => WebSocketMessage.FromText("v1:" + m.Text)));
        await using var server = await TestServer.StartAsync(app =>
        {
            app.MapWebSocket("/hosted", ws =>
            {
                ws.Use(policies);
                ws.Inbound(m => WebSocketMessage.FromText(m.Text + ":after"));
                ws.OnMessage((m, c) => m.Text);
            });
        });
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/hosted"));
        await client.SendTextAsync("a");
        Assert.Equal("v1:a:after", await client.ReceiveTextAsync());

        policies.Reload(p =>
        {
            p.Inbound(m => m.Text == "blocked" ? null : WebSocketMessage.FromText("v2:" + m.Text)).WithName("v2-filter");
        });

        await client.SendTextAsync("blocked");
        await client.SendTextAsync("b");
        Assert.Equal("v2:b:after", await client.ReceiveTextAsync());
        Assert.Equal(WebSocketState.Open, client.State);

        // The drop is attributed to the interceptor inside the set, by name.
        var dropped = await server.Logs.WaitForAsync(e => e.EventId.Id == 201 && e.Message.Contains("Dropped", StringComparison.Ordinal));
        Assert.Contains("v2-filter", dropped.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Reload_ThatCannotBuild_ChangesNothing()
    {
        var policies = new ReloadableInterceptors(p => p.Inbound(m => WebSocketMessage.FromText("kept:" + m.Text)));
        await using var server = await TestServer.StartAsync(app => app.MapWebSocket("/hosted", ws =>
        {
            ws.Use(policies);
            ws.OnMessage((m, c) => m.Text);
        }));
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/hosted"));

        Assert.ThrowsAny<Exception>(() => policies.Reload(p => p.Use<NeedsMissingService>()));

        await client.SendTextAsync("x");
        Assert.Equal("kept:x", await client.ReceiveTextAsync());
    }

    [Fact]
    public void ChainsOfEndpointsThatAreGone_AreForgotten_SoReloadsDoNotGrow()
    {
        // The gateway maps its endpoints again on every reload: 200 reloads compose 200 generations of chains, of
        // which only the last endpoint's are still in use.
        using var services = new ServiceCollection().BuildServiceProvider();
        var policies = new ReloadableInterceptors(p => p.Inbound(m => m));
        var current = ComposeEndpoint(policies, services);
        for (var i = 0; i < 200; i++)
        {
            current = ComposeEndpoint(policies, services);
            policies.Reload(p => p.Inbound(m => m));
        }

        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        policies.Reload(p => p.Outbound(m => m));

        // The last endpoint's chains only: per direction, one of data messages and one of control frames.
        Assert.Equal(4, policies.LiveSlotCount);
        GC.KeepAlive(current);
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static MessagePipeline ComposeEndpoint(ReloadableInterceptors policies, IServiceProvider services)
    {
        var builder = new WebSocketPipelineBuilder();
        builder.Use(policies);
        return MessagePipeline.Build(builder.Interceptors, services);
    }

    private sealed class NeedsMissingService(IDisposable missing) : IMessageInterceptor
    {
        public ValueTask InboundAsync(MessageContext context, MessageDelegate next) => missing is null ? default : next(context);
    }
}
