using Microsoft.AspNetCore.Http;

namespace Sluice.Tests.Proxy;

/// <summary>Target rewriting: values are data, never URL syntax.</summary>
public class WebSocketProxyTargetTests
{
    [Theory]
    [InlineData("..", "/rooms/%2E%2E/feed")]
    [InlineData(".", "/rooms/%2E/feed")]
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
