using System.Text.Json.Nodes;
using FsCheck;
using FsCheck.Xunit;
using Microsoft.Extensions.DependencyInjection;
using Sluice.Gateway.Configuration;

namespace Sluice.Gateway.Tests;

/// <summary>
/// Property tests of the configuration loader (in process, thousands of files): a valid file mutated at random —
/// values replaced by values of other types, keys removed or misspelled, lists emptied — never makes the loader
/// throw, and every error it reports names a JSON path.
/// </summary>
public class ConfigFuzzTests
{
    private const string Valid = """
        {
          "listen": ["http://127.0.0.1:8080"],
          "limits": { "maxMessageBytes": 1048576, "idleTimeoutSeconds": 300, "keepAliveSeconds": 30, "maxConnections": 8000 },
          "admin": { "path": "/_sluice", "apiKey": "0123456789abcdef0123" },
          "routes": [
            { "path": "/chat/{room}", "proxy": { "target": "ws://127.0.0.1:9001/rooms/${params.room}?user=${query.user}", "forwardHeaders": ["Authorization"], "connectTimeoutMs": 5000 },
              "upgrade": ["api-key", "origins", "conn-rate"], "inbound": ["max-64k", "schema", "redact", "rate"], "outbound": ["drop-internal", "transform", "timer"] },
            { "path": "/echo", "handler": { "type": "echo" }, "inbound": ["max-64k", "log"] },
            { "path": "/topics", "handler": { "type": "pubsub" } }
          ],
          "policies": {
            "api-key": { "type": "api-key", "options": { "header": "X-Api-Key", "query": "apikey", "keys": [ { "key": "k-bob", "subject": "bob" } ] } },
            "origins": { "type": "origin", "options": { "allow": ["https://app.example.com"] } },
            "conn-rate": { "type": "connection-rate-limit", "options": { "permits": 10, "perSeconds": 1, "partitionBy": "ip" } },
            "max-64k": { "type": "size-limit", "options": { "maxBytes": 65536, "action": "close" } },
            "schema": { "type": "json-schema", "options": { "schema": { "type": "object", "required": ["text"] }, "action": "reply" } },
            "redact": { "type": "json-redact", "options": { "paths": ["/password"], "mode": "mask" } },
            "rate": { "type": "rate-limit", "when": { "path": "/action", "in": ["send"] }, "options": { "permits": 10, "perSeconds": 1, "burst": 20, "partitionBy": "subject", "key": "/action", "action": "reply" } },
            "drop-internal": { "type": "json-filter", "options": { "path": "/type", "in": ["internal"], "action": "drop" } },
            "transform": { "type": "json-transform", "options": { "set": { "/via": "sluice" }, "remove": ["/debug"], "rename": { "/a": "/b" } } },
            "timer": { "type": "timer", "options": { "field": "ms" } },
            "log": { "type": "log", "options": { "level": "information", "sample": 0.5, "redact": ["/password"] } }
          }
        }
        """;

    private static readonly string[] s_prefixes = ["(file)", "listen", "limits", "admin", "backplane", "routes", "policies", "$schema"];
    private static readonly IServiceProvider s_services = new ServiceCollection().AddLogging().BuildServiceProvider();

    [Fact]
    public void TheSeedFile_IsValid() => Assert.Empty(Load(Valid).Errors);

    [Property(MaxTest = 2000)]
    public void AnyMutation_IsReportedWithPaths_NeverThrown(int seed, PositiveInt mutations)
    {
        var random = new Random(seed);
        var root = JsonNode.Parse(Valid)!;
        for (var i = 0; i < 1 + (mutations.Get % 4); i++)
        {
            Mutate(root, random);
        }

        var text = root.ToJsonString();
        var result = Load(text);

        Assert.All(result.Errors, error => Assert.True(s_prefixes.Any(p => error.Path.StartsWith(p, StringComparison.Ordinal)), $"no JSON path in: {error}\nfile: {text}"));
        Assert.True(result.IsValid != (result.Errors.Count > 0), text);
    }

    [Property(MaxTest = 500)]
    public void TruncatedFiles_AreReportedAsInvalidJson(PositiveInt cut)
    {
        var text = Valid[..(cut.Get % Valid.Length)];

        var result = Load(text);

        Assert.False(result.IsValid);
        Assert.Single(result.Errors);
        Assert.Equal("(file)", result.Errors[0].Path);
    }

    private static ConfigResult Load(string text)
    {
        var result = ConfigLoader.Parse(text, Path.GetTempPath(), s_services);
        if (result.Config is { } config)
        {
            ConfigLoader.DisposeNew(config.Policies.Values, null);
        }

        return result;
    }

    private static void Mutate(JsonNode root, Random random)
    {
        var nodes = new List<JsonNode>();
        Collect(root, nodes);
        var target = nodes[random.Next(nodes.Count)];
        var parent = target.Parent;
        if (parent is null)
        {
            return;
        }

        JsonNode? replacement = random.Next(9) switch
        {
            0 => null,
            1 => JsonValue.Create(random.Next(-5, 100_000)),
            2 => JsonValue.Create(-1.5),
            3 => JsonValue.Create("redcat"),
            4 => JsonValue.Create(true),
            5 => new JsonArray(JsonValue.Create("x"), JsonValue.Create(1)),
            6 => new JsonObject { ["unexpected"] = 1 },
            7 => JsonValue.Create("env:SLUICE_FUZZ_UNSET_VARIABLE"),
            _ => JsonValue.Create(new string('x', random.Next(0, 3000))),
        };

        switch (parent)
        {
            case JsonObject obj:
                var name = target.GetPropertyName();
                switch (random.Next(3))
                {
                    case 0:
                        obj.Remove(name);
                        break;
                    case 1:
                        obj.Remove(name);
                        obj[name + "x"] = replacement;
                        break;
                    default:
                        obj[name] = replacement;
                        break;
                }

                break;
            case JsonArray array:
                var index = target.GetElementIndex();
                if (random.Next(2) == 0)
                {
                    array.RemoveAt(index);
                }
                else
                {
                    array[index] = replacement;
                }

                break;
        }
    }

    private static void Collect(JsonNode? node, List<JsonNode> nodes)
    {
        if (node is null)
        {
            return;
        }

        nodes.Add(node);
        switch (node)
        {
            case JsonObject obj:
                foreach (var (_, child) in obj)
                {
                    Collect(child, nodes);
                }

                break;
            case JsonArray array:
                foreach (var child in array)
                {
                    Collect(child, nodes);
                }

                break;
        }
    }
}
