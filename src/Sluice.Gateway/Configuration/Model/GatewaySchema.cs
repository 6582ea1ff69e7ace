using System.ComponentModel;
using System.ComponentModel.DataAnnotations;
using System.Globalization;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Schema;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;
using Sluice.Policies;
using Sluice.Policies.Json;

namespace Sluice.Gateway.Configuration.Model;

/// <summary>
/// The JSON Schema of the gateway file (schemas/sluice-gateway.schema.json), generated from the model records with
/// System.Text.Json's <see cref="JsonSchemaExporter"/>: their attributes give descriptions, required keys and ranges;
/// unknown keys are not allowed, as the reader does not allow them. The options of each built-in policy type and
/// handler are described with <c>if</c>/<c>then</c> on <c>type</c>, generated from their options classes; a plugin's
/// options are left open. Checks that need more than one value (route parameters in a target, policy kinds) are the
/// gateway's own: <c>--check</c> remains the complete check.
/// </summary>
internal static class GatewaySchema
{
    public const string Id = "https://raw.githubusercontent.com/sluice-ws/sluice/main/schemas/sluice-gateway.schema.json";

    private static readonly JsonSerializerOptions s_modelOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        TypeInfoResolver = new DefaultJsonTypeInfoResolver(),
    };

    /// <summary>The schema, as it is committed.</summary>
    public static string Generate()
    {
        var schema = Export(s_modelOptions, typeof(GatewayFile)).AsObject();
        var root = new JsonObject
        {
            ["$schema"] = "https://json-schema.org/draft/2020-12/schema",
            ["$id"] = Id,
            ["title"] = "Sluice gateway configuration",
        };
        foreach (var (key, value) in schema.ToList())
        {
            schema.Remove(key);
            root[key] = value;
        }

        var policy = (JsonObject)root["properties"]!["policies"]!["additionalProperties"]!;
        policy["allOf"] = new JsonArray([.. BuiltInPolicyTypes.All.Values.Select(PolicyOptions)]);
        var handler = (JsonObject)root["properties"]!["routes"]!["items"]!["properties"]!["handler"]!;
        handler["allOf"] = new JsonArray([.. BuiltInHandlers.All.Values.Select(HandlerOptions)]);
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }) + "\n";
    }

    private static JsonNode PolicyOptions(PolicyType type)
    {
        // No fallback to an open object: a built-in type whose options cannot be described must fail the schema test.
        return When(type.Name, new JsonObject { ["options"] = Export(PolicyJson.OptionsBinding, type.OptionsType) });
    }

    private static JsonNode HandlerOptions(HandlerType type) => When(
        type.Name,
        new JsonObject { ["options"] = type.OptionsType is null ? JsonValue.Create(false) : Export(s_modelOptions, type.OptionsType) });

    private static JsonObject When(string type, JsonObject properties) => new()
    {
        ["if"] = new JsonObject { ["properties"] = new JsonObject { ["type"] = new JsonObject { ["const"] = type } }, ["required"] = new JsonArray("type") },
        ["then"] = new JsonObject { ["properties"] = properties },
    };

    private static JsonNode Export(JsonSerializerOptions options, Type type) => options.GetJsonSchemaAsNode(type, new JsonSchemaExporterOptions
    {
        TransformSchemaNode = Describe,
        // Items of lists and values of maps have no nullability annotations; the reader rejects null ones.
        TreatNullObliviousAsNonNullable = true,
    });

    private static JsonNode Describe(JsonSchemaExporterContext context, JsonNode schema)
    {
        if (schema is not JsonObject node)
        {
            return schema;
        }

        var attributes = context.PropertyInfo?.AttributeProvider ?? context.TypeInfo.Type;
        if (attributes.GetCustomAttributes(typeof(DescriptionAttribute), false).FirstOrDefault() is DescriptionAttribute description)
        {
            node.Insert(0, "description", description.Description);
        }

        // Every object, whether it stands alone (an item of a list, a value of a map) or under a key: its required keys
        // and no others. The exporter calls this once per property node too, with PropertyInfo set.
        if (context.TypeInfo.Kind == JsonTypeInfoKind.Object)
        {
            // A record in a list or a map may not be null (the reader says "is required"); one under a key may, and
            // means the defaults.
            if (context.PropertyInfo is null && context.TypeInfo.Type.Namespace == typeof(GatewayFile).Namespace)
            {
                node["type"] = "object";
            }

            var required = context.TypeInfo.Properties
                .Where(p => p.AttributeProvider?.IsDefined(typeof(RequiredAttribute), false) == true)
                .Select(p => JsonValue.Create(p.Name))
                .ToArray();
            if (required.Length > 0)
            {
                node["required"] = new JsonArray(required);
            }

            node["additionalProperties"] = false;
        }

        if (context.PropertyInfo?.AttributeProvider is { } property)
        {
            if (property.GetCustomAttributes(typeof(RangeAttribute), false).FirstOrDefault() is RangeAttribute range)
            {
                node["minimum"] = Convert.ToDouble(range.Minimum, CultureInfo.InvariantCulture);
                node["maximum"] = Convert.ToDouble(range.Maximum, CultureInfo.InvariantCulture);
            }

            if (property.GetCustomAttributes(typeof(AllowedValuesAttribute), false).FirstOrDefault() is AllowedValuesAttribute allowed)
            {
                node["enum"] = new JsonArray([.. allowed.Values.Select(v => JsonValue.Create(v?.ToString()))]);
            }

            if (property.GetCustomAttributes(typeof(MinLengthAttribute), false).FirstOrDefault() is MinLengthAttribute minLength)
            {
                node["minItems"] = minLength.Length;
            }

            if (property.IsDefined(typeof(SingleOrListAttribute), false))
            {
                node.Remove("type");
                var items = node["items"]!.DeepClone();
                node.Remove("items");
                node["anyOf"] = new JsonArray(items, new JsonObject { ["type"] = "array", ["items"] = items.DeepClone() });
            }
        }

        return node;
    }
}
