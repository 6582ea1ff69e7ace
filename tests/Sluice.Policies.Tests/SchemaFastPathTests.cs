using System.Text.Json;
using System.Text.Json.Nodes;
using FsCheck.Xunit;
using Json.Schema;
using Sluice.Policies.Json;

namespace Sluice.Policies.Tests;

/// <summary>
/// The json-schema policy's fast path against JsonSchema.Net, the authority: on random schemas of the supported
/// keywords and random documents, whatever the fast path calls valid, JsonSchema.Net does too. The seeds range up to a
/// million (EndSize): FsCheck's default of 100 would draw the same 201 schemas however many tests run.
/// </summary>
public class SchemaFastPathTests
{
    private static readonly EvaluationOptions s_flag = new() { OutputFormat = OutputFormat.Flag };

    // Half the documents keep é and 😀 as raw UTF-8 instead of \u escapes: the fast path reads the two differently.
    private static readonly JsonSerializerOptions s_unescaped = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    [Property(MaxTest = 3000, EndSize = 1_000_000)]
    public void WhatTheFastPathCallsValid_JsonSchemaNetCallsValid(int seed)
    {
        var random = new Random(seed);
        var schema = RandomSchema(random, 0);
        var fast = SchemaFastPath.TryCompile(schema);
        Assert.NotNull(fast);
        var library = JsonSchema.FromText(schema.ToJsonString(), new BuildOptions { SchemaRegistry = new SchemaRegistry() });

        for (var i = 0; i < 10; i++)
        {
            var text = Text(RandomInstance(random, 0), random);
            using var document = JsonDocument.Parse(text);
            var verdict = fast!.Evaluate(document.RootElement);
            bool valid;
            try
            {
                valid = library.Evaluate(document.RootElement, s_flag).IsValid;
            }
            catch (FormatException)
            {
                // JsonSchema.Net 8.0.5 compares enum numbers through decimal and throws past its range (1e300); the
                // policy rejects such messages (JsonSchemaPolicyTests), the fast path may prove them valid.
                continue;
            }

            Assert.False(verdict == FastVerdict.Valid && !valid, $"schema {schema.ToJsonString()} instance {text}: fast path valid, JsonSchema.Net invalid");
        }
    }

    /// <summary>
    /// The other way: the fast path decides every valid message it can read exactly (all but numbers with an exponent,
    /// which it leaves to the library), so valid traffic never pays for JsonSchema.Net.
    /// </summary>
    [Property(MaxTest = 3000, EndSize = 1_000_000)]
    public void WhatJsonSchemaNetCallsValid_TheFastPathCallsValid_ExceptExponents(int seed)
    {
        var random = new Random(seed);
        var schema = RandomSchema(random, 0);
        var fast = SchemaFastPath.TryCompile(schema)!;
        var library = JsonSchema.FromText(schema.ToJsonString(), new BuildOptions { SchemaRegistry = new SchemaRegistry() });

        for (var i = 0; i < 10; i++)
        {
            var text = Text(RandomInstance(random, 0), random);
            using var document = JsonDocument.Parse(text);
            if (HasExponent(document.RootElement))
            {
                continue;
            }

            bool valid;
            try
            {
                valid = library.Evaluate(document.RootElement, s_flag).IsValid;
            }
            catch (FormatException)
            {
                // An enum of the schema past decimal's range (1e300): see the test above.
                continue;
            }

            if (valid)
            {
                Assert.True(fast.Evaluate(document.RootElement) == FastVerdict.Valid, $"schema {schema.ToJsonString()} instance {text}: JsonSchema.Net valid, fast path not");
            }
        }
    }

    [Fact]
    public void TheBenchmarkSchema_AcceptsItsMessage_OnTheFastPath()
    {
        var schema = JsonNode.Parse("""{ "type": "object", "required": ["text"], "properties": { "text": { "type": "string", "maxLength": 5 }, "n": { "type": "integer", "minimum": 0 } }, "additionalProperties": false }""");
        var fast = SchemaFastPath.TryCompile(schema)!;

        Assert.Equal(FastVerdict.Valid, fast.Evaluate(Parse("""{"text":"héllo","n":1.0}""")));
        Assert.Equal(FastVerdict.AskTheLibrary, fast.Evaluate(Parse("""{"text":"toolong"}""")));
        Assert.Equal(FastVerdict.AskTheLibrary, fast.Evaluate(Parse("""{"text":"a","n":1.5}""")));
        Assert.Equal(FastVerdict.AskTheLibrary, fast.Evaluate(Parse("""{"text":"a","extra":1}""")));
        Assert.Equal(FastVerdict.AskTheLibrary, fast.Evaluate(Parse("""{"text":"a","n":1e400}""")));
    }

    [Fact]
    public void IllFormedUtf8_InANameOrString_IsLeftToTheLibrary()
    {
        // The parse does not check UTF-8 inside strings; a message an interceptor made may hold anything.
        var fast = SchemaFastPath.TryCompile(JsonNode.Parse("""{ "properties": { "text": { "maxLength": 5 } } }"""))!;
        byte[] illFormedValue = [.. "{\"text\":\"h"u8, 0xFF, .. "llo\"}"u8];
        byte[] illFormedName = [.. "{\"n"u8, 0xFF, .. "\":1}"u8];

        Assert.Equal(FastVerdict.Valid, fast.Evaluate(Parse("""{"text":"héllo","né":1}""")));
        Assert.Equal(FastVerdict.AskTheLibrary, fast.Evaluate(JsonDocument.Parse(illFormedValue).RootElement));
        Assert.Equal(FastVerdict.AskTheLibrary, fast.Evaluate(JsonDocument.Parse(illFormedName).RootElement));
    }

    [Theory]
    [InlineData("""{"maximum":0.3}""", "0.30000000000000001")]
    [InlineData("""{"maximum":9007199254740992}""", "9007199254740993")]
    [InlineData("""{"maximum":0}""", "0.0000000000000000000000000000001")]
    [InlineData("""{"exclusiveMinimum":1}""", "1.00000000000000000000000000000000001")]
    [InlineData("""{"type":"integer"}""", "1.0000000000000000000000000000000001")]
    public void NumbersPastDoublePrecision_AreNeverCalledValidByRounding(string schema, string instance)
    {
        var fast = SchemaFastPath.TryCompile(JsonNode.Parse(schema))!;

        Assert.Equal(FastVerdict.AskTheLibrary, fast.Evaluate(Parse(instance)));
    }

    [Theory]
    [InlineData("""{ "$ref": "#/$defs/x", "$defs": { "x": { "type": "string" } } }""")]
    [InlineData("""{ "oneOf": [ { "type": "string" } ] }""")]
    [InlineData("""{ "type": "string", "pattern": "^a" }""")]
    [InlineData("""{ "type": "string", "format": "email" }""")]
    [InlineData("""{ "$schema": "http://json-schema.org/draft-04/schema#", "type": "object" }""")]
    [InlineData("""{ "items": [ { "type": "string" } ] }""")]
    public void SchemasOutsideTheSubset_AreLeftToJsonSchemaNet(string schema) => Assert.Null(SchemaFastPath.TryCompile(JsonNode.Parse(schema)));

    private static JsonElement Parse(string json) => JsonDocument.Parse(json).RootElement;

    private static bool HasExponent(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.Number => element.GetRawText().Contains('E', StringComparison.OrdinalIgnoreCase),
        JsonValueKind.Array => element.EnumerateArray().Any(HasExponent),
        JsonValueKind.Object => element.EnumerateObject().Any(p => HasExponent(p.Value)),
        _ => false,
    };

    private static string Text(JsonNode? instance, Random random) => instance?.ToJsonString(random.Next(2) == 0 ? s_unescaped : null) ?? "null";

    private static JsonNode RandomSchema(Random random, int depth)
    {
        if (depth > 2 || random.Next(8) == 0)
        {
            return random.Next(4) == 0 ? JsonValue.Create(random.Next(2) == 0) : new JsonObject { ["type"] = RandomType(random) };
        }

        var schema = new JsonObject();
        if (random.Next(3) > 0)
        {
            schema["type"] = random.Next(4) == 0 ? new JsonArray(RandomType(random), RandomType(random)) : RandomType(random);
        }

        var names = new[] { "a", "b", "c", "ü" };
        if (random.Next(2) == 0)
        {
            var properties = new JsonObject();
            foreach (var name in names.Where(_ => random.Next(2) == 0))
            {
                properties[name] = RandomSchema(random, depth + 1);
            }

            schema["properties"] = properties;
        }

        if (random.Next(3) == 0)
        {
            schema["required"] = new JsonArray([.. names.Where(_ => random.Next(3) == 0).Select(n => JsonValue.Create(n))]);
        }

        if (random.Next(4) == 0)
        {
            schema["additionalProperties"] = RandomSchema(random, depth + 1);
        }

        if (random.Next(4) == 0)
        {
            schema["items"] = RandomSchema(random, depth + 1);
        }

        if (random.Next(6) == 0)
        {
            schema["enum"] = new JsonArray(RandomInstance(random, 2), RandomInstance(random, 2), JsonValue.Create(1), JsonValue.Create("a"));
        }

        if (random.Next(8) == 0)
        {
            schema["const"] = RandomInstance(random, 2);
        }

        foreach (var keyword in new[] { "minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties" })
        {
            if (random.Next(6) == 0)
            {
                schema[keyword] = random.Next(0, 4);
            }
        }

        foreach (var keyword in new[] { "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum" })
        {
            if (random.Next(6) == 0)
            {
                schema[keyword] = random.Next(2) == 0 ? random.Next(-3, 4) : random.Next(-30, 30) / 10.0;
            }
        }

        return schema;
    }

    private static JsonValue RandomType(Random random) =>
        JsonValue.Create(new[] { "object", "array", "string", "number", "integer", "boolean", "null" }[random.Next(7)]);

    private static JsonNode? RandomInstance(Random random, int depth) => (depth > 3 ? random.Next(7) : random.Next(9)) switch
    {
        0 => null,
        1 => JsonValue.Create(random.Next(2) == 0),
        2 => JsonValue.Create(random.Next(-4, 5)),
        3 => JsonValue.Create(random.Next(-40, 40) / 10.0),
        4 => JsonValue.Create(new string('é', random.Next(0, 5))),
        // Lengths count text elements: e and a combining accent, CR LF and a flag's two regional indicators are one each.
        5 => JsonValue.Create(new[] { "a", "😀", "ab", "", "e\u0301", "\r\n", "🇫🇷" }[random.Next(7)]),
        6 => JsonValue.Create(random.Next(2) == 0 ? 1e300 : 2.0),
        7 => new JsonObject(new[] { "a", "b", "c", "ü", "z" }.Where(_ => random.Next(2) == 0).Select(n => KeyValuePair.Create(n, RandomInstance(random, depth + 1)))),
        _ => new JsonArray([.. Enumerable.Range(0, random.Next(0, 4)).Select(_ => RandomInstance(random, depth + 1))]),
    };
}
