using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Sluice.Proxy;

namespace Sluice.Tests.Proxy;

/// <summary>The public helpers the gateway uses instead of the library's internals.</summary>
public class WebSocketProxyPublicApiTests
{
    [Theory]
    [InlineData("Authorization", true)]
    [InlineData("X-Request-Id", true)]
    [InlineData("Sec-WebSocket-Key", false)]
    [InlineData("sec-websocket-extensions", false)]
    [InlineData("Keep-Alive", false)]
    [InlineData("X-Forwarded-For", false)]
    [InlineData("x-sluice-subject", false)]
    [InlineData("traceparent", false)]
    public void CanForward_RefusesOneHopsHandshakeAndWhatTheProxySets(string header, bool expected) =>
        Assert.Equal(expected, WebSocketProxyHeaders.CanForward(header));

    [Fact]
    public void MapWebSocketProxy_RefusesTheHeadersCanForwardRefuses()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Services.AddSluice();
        using var app = builder.Build();

        // The proxy checks its forwarded headers with the same rule when the endpoint is built.
        var error = Assert.Throws<InvalidOperationException>(() =>
        {
            app.MapWebSocketProxy("/p", "ws://127.0.0.1:9/", p => p.ForwardHeaders.Add("Sec-WebSocket-Key"));
            _ = ((IEndpointRouteBuilder)app).DataSources.SelectMany(d => d.Endpoints).ToList();
        });
        Assert.Contains("Sec-WebSocket-Key", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void WithoutQuery_KeepsSchemeAuthorityAndPath_DropsTheQuery() =>
        Assert.Equal("wss://backend.example:8443/rooms/a", WebSocketProxyUrls.WithoutQuery(new Uri("wss://backend.example:8443/rooms/a?token=secret")));

    [Fact]
    public void CloseReasonLimit_IsWhatAControlFrameLeavesAfterTheCode() => Assert.Equal(125 - 2, WebSocketCloseReason.MaxBytes);
}
