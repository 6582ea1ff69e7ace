using Microsoft.Extensions.DependencyInjection;
using Sluice.Gateway.Configuration;

namespace Sluice.Gateway.Tests.PubSub;

/// <summary>The pubsub handler's options checked at load, each error at its JSON path; and the topic glob's matching.</summary>
public class PubSubOptionsTests
{
    private static readonly IServiceProvider s_services = new ServiceCollection().AddLogging().BuildServiceProvider();

    [Fact]
    public void AGlobOf10000Characters_IsRefusedAtItsPath_Quickly()
    {
        var glob = string.Concat(Enumerable.Repeat("a*", 5000));
        Assert.Equal(
            ["routes[0].handler.options.permissions[1].topics: must be 1 to 1024 characters, not 10000"],
            Errors($$"""{ "permissions": [ { "topics": "ok.*", "subscribe": ["*"] }, { "topics": "{{glob}}", "subscribe": ["*"] } ] }"""));
    }

    [Fact]
    public void BadPrincipals_Namespaces_AndSizes_AreRefusedAtTheirPaths()
    {
        Assert.Equal(
            [
                "routes[0].handler.options.namespace: must be 1 to 64 letters, digits or . _ : -",
                "routes[0].handler.options.permissions[0].subscribe[1]: 'everyone' is no principal: *, authenticated, subject:NAME or claim:NAME=VALUE",
                "routes[0].handler.options.permissions[0].publish[0]: 'claim:role' is no principal: *, authenticated, subject:NAME or claim:NAME=VALUE",
            ],
            Errors("""{ "namespace": "has space", "permissions": [ { "topics": "t", "subscribe": ["*", "everyone"], "publish": ["claim:role"] } ] }"""));
        Assert.Equal(["routes[0].handler.options.history.size: must be between 1 and 100000"], Errors("""{ "history": { "size": 100000000 } }"""));
        Assert.Equal(["routes[0].handler.options.history.ttlSeconds: must be between 1 and 604800"], Errors("""{ "history": { "ttlSeconds": 0 } }"""));
        Assert.Equal(["routes[0].handler.options.presence.joinLeave: must be true or false, not a string"], Errors("""{ "presence": { "joinLeave": "yes" } }"""));
        Assert.Equal(["routes[0].handler.options.permissions[0].topics: is required"], Errors("""{ "permissions": [ { "subscribe": ["*"] } ] }"""));
        Assert.Empty(Errors("""{ "namespace": "app", "maxSubscriptions": 5, "permissions": [ { "topics": "user.${subject}", "subscribe": ["authenticated"], "publish": ["subject:alice", "claim:role=admin"] } ], "history": { "size": 100, "ttlSeconds": 600 }, "presence": { "joinLeave": true } }"""));
    }

    [Theory]
    [InlineData("public.*", "public.news", null, true)]
    [InlineData("public.*", "public.", null, true)]
    [InlineData("public.*", "private.news", null, false)]
    [InlineData("*", "anything", null, true)]
    [InlineData("a*b*c", "axxbyyc", null, true)]
    [InlineData("a*b*c", "axxbyy", null, false)]
    [InlineData("a*a", "a", null, false)]
    [InlineData("user.${subject}", "user.bob", "bob", true)]
    [InlineData("user.${subject}", "user.alice", "bob", false)]
    [InlineData("user.${subject}", "user.bob", null, false)]
    [InlineData("user.${subject}", "user.anything", "*", false)]
    [InlineData("user.${subject}.*", "user.b*b.x", "b*b", true)]
    public void Globs_MatchAsDocumented(string glob, string topic, string? subject, bool matches) =>
        Assert.Equal(matches, new TopicGlob(glob).Matches(topic, subject));

    [Fact]
    public void AHostileGlob_MatchesInBoundedTime()
    {
        // a*a*a*...*b against aaaa...: exponential for a backtracking matcher, one pass here.
        var glob = new TopicGlob(string.Concat(Enumerable.Repeat("a*", 511)) + "b");
        var topic = new string('a', 256);
        for (var i = 0; i < 1000; i++)
        {
            Assert.False(glob.Matches(topic, null));
        }
    }

    private static List<string> Errors(string options)
    {
        var text = $$"""
            {
              "listen": ["http://127.0.0.1:8080"],
              "routes": [ { "path": "/t", "handler": { "type": "pubsub", "options": {{options}} } } ]
            }
            """;
        var result = ConfigLoader.Parse(text, Path.GetTempPath(), s_services);
        if (result.Config is { } config)
        {
            ConfigLoader.DisposeNew(config.Policies.Values, null);
        }

        return [.. result.Errors.Select(e => e.ToString())];
    }
}
