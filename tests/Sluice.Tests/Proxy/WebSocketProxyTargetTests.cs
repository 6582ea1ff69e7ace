using Microsoft.AspNetCore.Http;

namespace Sluice.Tests.Proxy;

/// <summary>Target rewriting: values are data, never URL syntax.</summary>
public class WebSocketProxyTargetTests
{
    [Theory]
    [InlineData("..")]
    [InlineData(".")]
    public void DotSegmentValues_AreRefused(string room)
    {
        var target = WebSocketProxyTarget.Parse("ws://backend:9001/rooms/${query.room}/feed", "/chat");
        var context = new DefaultHttpContext();
        context.Request.QueryString = QueryString.Create("room", room);

        Assert.Throws<FormatException>(() => target.Resolve(context));
    }

    [Theory]
    [InlineData("%2E%2E", "/rooms/%252E%252E/feed")]
    [InlineData("../admin", "/rooms/..%2Fadmin/feed")]
    [InlineData("a b&c=d#e", "/rooms/a%20b%26c%3Dd%23e/feed")]
    [InlineData("x\r\nHost: evil", "/rooms/x%0D%0AHost%3A%20evil/feed")]
    public void QueryValues_CannotClimbOutOfThePatternsPath(string room, string expectedPath)
    {
        var target = WebSocketProxyTarget.Parse("ws://backend:9001/rooms/${query.room}/feed", "/chat");
        var context = new DefaultHttpContext();
        context.Request.QueryString = QueryString.Create("room", room);

        var uri = target.Resolve(context);

        Assert.Equal(expectedPath, uri.AbsolutePath);
        Assert.Equal("backend:9001", uri.Authority);
    }
}
