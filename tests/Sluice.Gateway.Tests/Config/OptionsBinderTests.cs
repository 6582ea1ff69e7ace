using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.DependencyInjection;
using Sluice.Gateway.Configuration;
using Sluice.Policies;

namespace Sluice.Gateway.Tests.Config;

/// <summary>
/// How the options of a policy are reported when they do not bind or validate (in process, through the loader):
/// unknown members are found from the binding's contract, and policies' errors land at their member's path.
/// </summary>
public class OptionsBinderTests
{
    private static readonly IServiceProvider s_services = new ServiceCollection().AddLogging().BuildServiceProvider();

    public static TheoryData<string> PolicyTypes => [.. BuiltInPolicyTypes.All.Keys];

    [Theory]
    [MemberData(nameof(PolicyTypes))]
    public void AnUnknownOption_ListsTheOptionsTheTypeHas(string type)
    {
        var error = Assert.Single(Errors($$"""{ "type": "{{type}}", "options": { "zzzzzzzz": 1 } }"""));

        // The names the file may use: [JsonPropertyName] where given, the camelCase name otherwise.
        var known = BuiltInPolicyTypes.All[type].OptionsType.GetProperties()
            .Where(p => p.CanWrite && p.GetCustomAttribute<JsonIgnoreAttribute>() is null)
            .Select(p => p.GetCustomAttribute<JsonPropertyNameAttribute>()?.Name ?? JsonNamingPolicy.CamelCase.ConvertName(p.Name));
        Assert.Equal($"policies.p.options.zzzzzzzz: unknown option (known: {string.Join(", ", known)})", error);
    }

    [Fact]
    public void AnOptionNamedByJsonPropertyName_IsKnown() =>
        Assert.Empty(Errors("""{ "type": "json-filter", "options": { "path": "/type", "equals": "x", "action": "drop" } }"""));

    [Fact]
    public void AnUnknownMemberOfAnItem_IsReportedAtItsPath_WithTheItemsMembers() =>
        Assert.Equal(
            ["policies.p.options.keys[1].subjekt: unknown option; did you mean 'subject'?"],
            Errors("""{ "type": "api-key", "options": { "header": "X-Key", "keys": [ { "key": "k1", "subject": "a" }, { "key": "k2", "subjekt": "b" } ] } }"""));

    [Fact]
    public void AValueOfTheWrongType_NamesTheType() =>
        Assert.Equal(["policies.p.options.maxBytes: must be a whole number"], Errors("""{ "type": "size-limit", "options": { "maxBytes": "big" } }"""));

    [Fact]
    public void AMessageWithAColon_StaysWhole_UnderItsMember() =>
        Assert.Equal(
            ["policies.p.options.signingKey: the base64: value is not valid base64"],
            Errors("""{ "type": "jwt", "options": { "signingKey": "base64:not base64!" } }"""));

    private static List<string> Errors(string policy)
    {
        var text = $$"""
            {
              "listen": ["http://127.0.0.1:8080"],
              "routes": [ { "path": "/echo", "handler": { "type": "echo" } } ],
              "policies": { "p": {{policy}} }
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
