using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;
using Microsoft.Extensions.DependencyInjection;
using Sluice.Gateway.Configuration;
using Sluice.Gateway.Configuration.Model;

namespace Sluice.Gateway.Tests.Schema;

/// <summary>
/// The committed JSON Schema of the gateway file (schemas/sluice-gateway.schema.json) is the one the model generates,
/// and the repository's example files pass it. Regenerate it with <c>SLUICE_UPDATE_SCHEMA=1 dotnet test --filter
/// GatewaySchemaTests</c> (docs/configuration.md).
/// </summary>
public class GatewaySchemaTests
{
    private static readonly string s_root = RepositoryRoot();
    private static readonly string s_schemaFile = Path.Combine(s_root, "schemas", "sluice-gateway.schema.json");

    [Fact]
    public void TheCommittedSchema_IsTheOneTheModelGenerates()
    {
        var generated = GatewaySchema.Generate();
        UpdateIfAsked();

        Assert.True(File.Exists(s_schemaFile), $"{s_schemaFile} is missing: run SLUICE_UPDATE_SCHEMA=1 dotnet test --filter GatewaySchemaTests");
        Assert.True(
            generated == File.ReadAllText(s_schemaFile).ReplaceLineEndings("\n"),
            $"{s_schemaFile} is stale: the model changed. Run SLUICE_UPDATE_SCHEMA=1 dotnet test --filter GatewaySchemaTests and commit the file.");
    }

    public static TheoryData<string> Examples() =>
    [
        "src/Sluice.Gateway/Demo/demo.json",
        "samples/CustomPolicy/sluice.json",
        "README.md",
        "docs/configuration.md",
    ];

    [Theory]
    [MemberData(nameof(Examples))]
    public void TheExampleFiles_PassTheSchema_AndReferToIt(string file)
    {
        var schema = LoadSchema();
        var text = File.ReadAllText(Path.Combine(s_root, file));
        if (file.EndsWith(".md", StringComparison.Ordinal))
        {
            // The document's example of a whole file: the JSON block that names the schema.
            var at = text.IndexOf("\"$schema\"", StringComparison.Ordinal);
            Assert.True(at > 0, $"{file} has no example with \"$schema\"");
            var start = text.IndexOf('\n', text.LastIndexOf("```json", at, StringComparison.Ordinal)) + 1;
            text = text[start..text.IndexOf("```", at, StringComparison.Ordinal)];
        }

        var node = JsonNode.Parse(text, documentOptions: new() { CommentHandling = System.Text.Json.JsonCommentHandling.Skip, AllowTrailingCommas = true })!;

        var result = schema.Evaluate(JsonSerializer.SerializeToElement(node), new EvaluationOptions { OutputFormat = OutputFormat.List });

        Assert.True(result.IsValid, string.Join("\n", (result.Details ?? []).Where(d => d.Errors is { Count: > 0 }).SelectMany(d => d.Errors!.Select(e => $"{d.InstanceLocation}: {e.Value}"))));
        Assert.EndsWith("schemas/sluice-gateway.schema.json", node["$schema"]?.GetValue<string>() ?? "(no $schema)", StringComparison.Ordinal);
    }

    [Fact]
    public void TheLoader_AcceptsATopLevelSchemaKey()
    {
        using var services = new ServiceCollection().AddLogging().BuildServiceProvider();

        var result = ConfigLoader.Parse(
            """{ "$schema": "./schemas/sluice-gateway.schema.json", "routes": [ { "path": "/echo", "handler": { "type": "echo" } } ] }""",
            Path.GetTempPath(),
            services);

        Assert.Empty(result.Errors);
    }

    [Theory]
    [InlineData("""{ "routes": [ { "path": "/echo", "handler": { "type": "echo" } } ], "limtis": {} }""")]
    [InlineData("""{ "routes": [ { "path": "/echo", "handler": { "type": "echo" } } ], "limits": { "keepAliveSeconds": -1 } }""")]
    [InlineData("""{ "routes": [ { "path": "/topics", "handler": { "type": "pubsub", "options": { "maxSubscription": 5 } } } ] }""")]
    [InlineData("""{ "routes": [ { "path": "/a", "handler": { "type": "echo" }, "inbound": ["m"] } ], "policies": { "m": { "type": "size-limit", "options": { "maxByte": 1 } } } }""")]
    [InlineData("""{ "routes": [] }""")]
    [InlineData("""{ "routes": [ { "path": "/echo", "handler": { "type": "echo" } } ], "limits": { "maxMesageBytes": 1 } }""")]
    [InlineData("""{ "routes": [ { "path": "/echo", "handler": { "type": "echo" } } ], "admin": { "pth": "/x" } }""")]
    [InlineData("""{ "routes": [ { "path": "/echo", "handler": { "type": "echo" } } ], "backplane": { "type": "redis" } }""")]
    [InlineData("""{ "routes": [ { "path": "/p", "proxy": { "targte": "ws://127.0.0.1:1/" } } ] }""")]
    [InlineData("""{ "routes": [ { "path": "/h", "handler": { "typ": "echo" } } ] }""")]
    public void TheSchema_RejectsWhatTheGatewayRejects(string file)
    {
        var schema = LoadSchema();

        using var document = JsonDocument.Parse(file);

        Assert.False(schema.Evaluate(document.RootElement).IsValid);
    }

    private static void UpdateIfAsked() => _ = s_updated.Value;

    private static readonly Lazy<bool> s_updated = new(() =>
    {
        if (Environment.GetEnvironmentVariable("SLUICE_UPDATE_SCHEMA") != "1")
        {
            return false;
        }

        Directory.CreateDirectory(Path.GetDirectoryName(s_schemaFile)!);
        File.WriteAllText(s_schemaFile, GatewaySchema.Generate());
        return true;
    });

    // A registry of its own per schema: the schema's $id may be registered once per registry.
    private static JsonSchema LoadSchema()
    {
        UpdateIfAsked();
        return JsonSchema.FromText(File.ReadAllText(s_schemaFile), new BuildOptions { SchemaRegistry = new SchemaRegistry() });
    }

    private static string RepositoryRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "Sluice.slnx")))
            {
                return directory.FullName;
            }
        }

        throw new InvalidOperationException("Sluice.slnx not found above " + AppContext.BaseDirectory);
    }
}
