using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Sluice.Tests.Infrastructure;

namespace Sluice.Tests.Pipeline;

/// <summary>Polyflux's get_context(): the current message context, anywhere below an interceptor, across awaits.</summary>
public class MessageContextAccessorTests
{
    private sealed class DeepService(IMessageContextAccessor accessor)
    {
        public async Task<string> DescribeAsync()
        {
            await Task.Delay(5);
            await Task.Yield();
            var context = accessor.MessageContext ?? throw new InvalidOperationException("no context");
            return $"{context.Direction}:{context.Items["user"]}:{context.ChainId > 0}";
        }
    }

    [Fact]
    public async Task Accessor_ReturnsCurrentContext_AcrossAwaits_InBothDirections()
    {
        string? outboundSeen = null;
        await using var server = await TestServer.StartAsync(
            app => app.MapWebSocket("/ctx", ws =>
            {
                ws.Use(ctx =>
                {
                    ctx.Items["user"] = "ann";
                    return true;
                }).InboundOnly();
                ws.Use(async (ctx, next) =>
                {
                    ctx.Items["user"] = "out";
                    outboundSeen = await app.Services.GetRequiredService<DeepService>().DescribeAsync();
                    await next(ctx);
                }).OutboundOnly();
                ws.OnMessage(async (m, c) => (object?)await app.Services.GetRequiredService<DeepService>().DescribeAsync());
            }),
            services => services.AddSingleton<DeepService>());
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/ctx"));

        await client.SendTextAsync("go");

        Assert.Equal("Inbound:ann:True", await client.ReceiveTextAsync());
        Assert.Equal("Outbound:out:True", outboundSeen);
        Assert.Null(server.Services.GetRequiredService<IMessageContextAccessor>().MessageContext);
    }
}
