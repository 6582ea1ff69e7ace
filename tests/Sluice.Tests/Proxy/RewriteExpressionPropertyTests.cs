using System.Security.Claims;
using System.Text;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Microsoft.AspNetCore.Http;

namespace Sluice.Tests.Proxy;

/// <summary>
/// Every expression kind, any value (CR/LF, '/', '?', '#', '%', '&amp;', non-ASCII): the value stays inside the path segment
/// or query value it was placed in and decodes back to itself; the scheme, host and the pattern's other parts never change.
/// </summary>
public class RewriteExpressionPropertyTests
{
    private const string Env = "SLUICE_REWRITE_PROPERTY_TEST";

    public static Arbitrary<string> Values() => Gen.OneOf(
            ArbMap.Default.GeneratorFor<string>().Where(s => s is not null),
            Gen.Elements("/", "?", "#", "%", "%2E%2E", "&x=1", "\r\nHost: evil", "../admin", "a/./b", " ", "é€😀", "=&?#/"),
            ArbMap.Default.GeneratorFor<char[]>().Select(c => new string(c)))
        .ToArbitrary();

    [Property(MaxTest = 500, Arbitrary = [typeof(RewriteExpressionPropertyTests)])]
    public void AnyValue_StaysInItsSegmentAndQueryValue_AndDecodesBack(string value)
    {
        foreach (var kind in new[] { "params.room", "query.v", "headers.X-Value", "subject", "claims.tenant", "env." + Env })
        {
            Check(kind, value);
        }
    }

    [Theory]
    [InlineData("params.room")]
    [InlineData("query.v")]
    [InlineData("headers.X-Value")]
    [InlineData("subject")]
    [InlineData("claims.tenant")]
    [InlineData("env." + Env)]
    public void DotSegmentValues_AreRefused_ForEveryKind(string kind)
    {
        foreach (var dots in new[] { ".", ".." })
        {
            var (target, upgrade, _) = Arrange(kind, dots);
            Assert.Throws<FormatException>(() => target.Resolve(upgrade));
        }
    }

    [Fact]
    public void ConnectionId_IsTheIdTheConnectionWillHave_AndStable()
    {
        var target = WebSocketProxyTarget.Parse("ws://backend:9001/c/${connection.id}", "/p");
        var upgrade = new UpgradeContext(new DefaultHttpContext(), "/p");

        var first = target.Resolve(upgrade);

        Assert.Equal("/c/" + upgrade.ConnectionId, first.AbsolutePath);
        Assert.Equal(first, target.Resolve(upgrade));
        Assert.Equal("/c/", target.Resolve(upgrade.HttpContext).AbsolutePath);
    }

    [Theory]
    [InlineData("${foo.bar}")]
    [InlineData("${subject.x}")]
    [InlineData("${connection}")]
    [InlineData("${connection.ip}")]
    [InlineData("${headers.}")]
    [InlineData("${claims}")]
    [InlineData("${env.}")]
    [InlineData("${params}")]
    public void UnknownExpressions_AreErrors(string expression)
    {
        Assert.False(WebSocketProxyTarget.TryParse("ws://backend:9001/x/" + expression, "/p/{room}", out _, out var error));
        Assert.Contains("is not an expression", error, StringComparison.Ordinal);
    }

    [Fact]
    public void ValuesCannotChooseTheHost()
    {
        Assert.False(WebSocketProxyTarget.TryParse("${env." + Env + "}/x", "/p", out _, out var error));
        Assert.Contains("must be literal", error, StringComparison.Ordinal);
        Assert.False(WebSocketProxyTarget.TryParse("ws://${headers.Host}/x", "/p", out _, out error));
        Assert.Contains("must be literal", error, StringComparison.Ordinal);
    }

    private static void Check(string kind, string value)
    {
        var (target, upgrade, effective) = Arrange(kind, value);
        // What any value can hold: lone surrogates have no UTF-8 form and become U+FFFD, as on the wire.
        var expected = Encoding.UTF8.GetString(Encoding.UTF8.GetBytes(effective));
        if (effective is "." or "..")
        {
            Assert.Throws<FormatException>(() => target.Resolve(upgrade));
            return;
        }

        var url = target.Resolve(upgrade).OriginalString;

        const string Prefix = "ws://backend:9001/a/";
        Assert.StartsWith(Prefix, url, StringComparison.Ordinal);
        Assert.DoesNotContain('#', url);
        var parts = url[Prefix.Length..].Split('?');
        Assert.Equal(2, parts.Length);
        var path = parts[0].Split('/');
        var query = parts[1].Split('&');
        Assert.Equal(new[] { path[0], "b" }, path);
        Assert.Equal(new[] { "v=" + path[0], "w=1" }, query);
        Assert.All(path[0], c => Assert.True(char.IsAsciiLetterOrDigit(c) || c is '-' or '.' or '_' or '~' or '%', $"{kind}: '{c}' in {url}"));
        Assert.Equal(expected, Uri.UnescapeDataString(path[0]));
    }

    private static (WebSocketProxyTarget Target, UpgradeContext Upgrade, string Value) Arrange(string kind, string value)
    {
        var context = new DefaultHttpContext();
        var upgrade = new UpgradeContext(context, "/p/{room}");
        switch (kind.Split('.')[0])
        {
            case "params":
                context.Request.RouteValues["room"] = value;
                break;
            case "query":
                context.Request.Query = new QueryCollection(new Dictionary<string, Microsoft.Extensions.Primitives.StringValues> { ["v"] = value });
                break;
            case "headers":
                context.Request.Headers["X-Value"] = value;
                break;
            case "subject":
                upgrade.Subject = value;
                break;
            case "claims":
                context.User = new ClaimsPrincipal(new ClaimsIdentity([new Claim("tenant", value)], "test"));
                break;
            default:
                // An environment variable cannot hold NUL; it is read when the pattern is parsed.
                Environment.SetEnvironmentVariable(Env, value.Replace('\0', ' '));
                value = value.Replace('\0', ' ');
                break;
        }

        var target = WebSocketProxyTarget.Parse($"ws://backend:9001/a/${{{kind}}}/b?v=${{{kind}}}&w=1", "/p/{room}");
        return (target, upgrade, value);
    }
}
