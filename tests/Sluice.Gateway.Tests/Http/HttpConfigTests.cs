using Microsoft.Extensions.DependencyInjection;
using Sluice.Gateway.Configuration;
using Sluice.Policies;

namespace Sluice.Gateway.Tests.Http;

/// <summary>The new keys are validated with their JSON paths: http-auth's options, a route's events, the http handler.</summary>
public sealed class HttpConfigTests
{
    private static readonly IServiceProvider s_services = new ServiceCollection().AddLogging().AddSluiceHttpCallouts().BuildServiceProvider();

    [Fact]
    public void HttpAuthOptions_AreCheckedAtTheirPaths()
    {
        var errors = Errors("""
            { "routes": [ { "path": "/a", "handler": { "type": "echo" }, "upgrade": ["auth"] } ],
              "policies": { "auth": { "type": "http-auth", "options": { "url": "ftp://x/", "forwardHeaders": ["Bad Header"], "timeoutMs": 0, "cacheSeconds": -1 } } } }
            """);

        Assert.Contains("policies.auth.options.url: 'ftp://x/' is not an absolute http:// or https:// URL", errors);
        Assert.Contains("policies.auth.options.forwardHeaders[0]: 'Bad Header' is not a header name", errors);
        Assert.Contains("policies.auth.options.timeoutMs: must be between 1 and 600000", errors);
        Assert.Contains("policies.auth.options.cacheSeconds: must be between 0 and 86400", errors);
    }

    [Fact]
    public void Events_UrlAndEventNames_AreChecked()
    {
        var errors = Errors("""
            { "routes": [ { "path": "/a", "handler": { "type": "echo" }, "events": { "url": "nowhere", "on": ["connect", "message"], "timeoutMs": 0 } } ] }
            """);

        Assert.Contains("routes[0].events.url: 'nowhere' is not an absolute http:// or https:// URL", errors);
        Assert.Contains("routes[0].events.on[1]: unknown event 'message' (events: connect, disconnect)", errors);
        Assert.Contains(errors, e => e.StartsWith("routes[0].events.timeoutMs:", StringComparison.Ordinal));
    }

    [Fact]
    public void HttpHandler_NeedsAUrl_AndItsKeysBelongToItAlone()
    {
        var errors = Errors("""
            { "routes": [
                { "path": "/a", "handler": { "type": "http" } },
                { "path": "/b", "handler": { "type": "http", "url": "ws://x/", "options": {} } },
                { "path": "/c", "handler": { "type": "echo", "url": "http://x/", "maxConcurrentRequests": 2 } } ] }
            """);

        Assert.Contains("routes[0].handler.url: is required for the http handler: the URL each message is POSTed to", errors);
        Assert.Contains("routes[1].handler.url: 'ws://x/' is not an absolute http:// or https:// URL", errors);
        Assert.Contains(errors, e => e.StartsWith("routes[1].handler.options: the http handler takes no options", StringComparison.Ordinal));
        Assert.Contains("routes[2].handler.url: only the http handler takes url", errors);
        Assert.Contains("routes[2].handler.maxConcurrentRequests: only the http handler takes maxConcurrentRequests", errors);
    }

    [Fact]
    public void ValidFile_WithEveryNewKey_Loads()
    {
        Assert.Empty(Errors("""
            { "routes": [ { "path": "/a", "upgrade": ["auth"], "handler": { "type": "http", "url": "http://127.0.0.1:9300/messages", "timeoutMs": 5000, "maxConcurrentRequests": 8 },
                            "events": { "url": "http://127.0.0.1:9300/events", "on": ["disconnect"], "timeoutMs": 2000, "queueSize": 100 } } ],
              "policies": { "auth": { "type": "http-auth", "options": { "url": "http://127.0.0.1:9300/auth", "forwardHeaders": ["Authorization"], "cacheSeconds": 5 } } } }
            """));
    }

    private static List<string> Errors(string text)
    {
        var result = ConfigLoader.Parse(text, Path.GetTempPath(), s_services);
        if (result.Config is { } config)
        {
            ConfigLoader.DisposeNew(config.Policies.Values, null);
        }

        return [.. result.Errors.Select(e => e.ToString())];
    }
}
