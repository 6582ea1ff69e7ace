using System.Diagnostics.CodeAnalysis;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;

namespace Sluice.Policies.Json;

/// <summary>JSON settings shared by the policies: how options are read and how JSON values are handled.</summary>
public static class PolicyJson
{
    // Options types are any class, plugins' included, bound by reflection: this cannot be trimmed or compiled ahead of time.
    internal const string ReflectionBinding = "Policy options are bound by reflection over their type (any class, a plugin's included); keep the options types when trimming.";

    private static JsonSerializerOptions? s_optionsBinding;

    /// <summary>
    /// Gets the serializer options that bind policy options from the gateway file's camelCase JSON: names are
    /// case-insensitive, enums are kebab-case strings, comments and trailing commas are allowed, and an unknown
    /// member is an error (a typo in an option name must not be silently ignored).
    /// </summary>
    public static JsonSerializerOptions OptionsBinding
    {
        [RequiresUnreferencedCode(ReflectionBinding)]
        [RequiresDynamicCode(ReflectionBinding)]
        get => LazyInitializer.EnsureInitialized(ref s_optionsBinding, CreateOptionsBinding);
    }

    /// <summary>JsonNode and JsonElement conversions, source-generated, for the policies' own use.</summary>
    internal static JsonTypeInfo<JsonNode> NodeTypeInfo => PolicyJsonContext.Default.JsonNode;

    /// <inheritdoc cref="NodeTypeInfo"/>
    internal static JsonTypeInfo<JsonElement> ElementTypeInfo => PolicyJsonContext.Default.JsonElement;

    [RequiresUnreferencedCode(ReflectionBinding)]
    [RequiresDynamicCode(ReflectionBinding)]
    private static JsonSerializerOptions CreateOptionsBinding()
    {
        var options = new JsonSerializerOptions(JsonSerializerDefaults.Web)
        {
            PropertyNameCaseInsensitive = true,
            ReadCommentHandling = JsonCommentHandling.Skip,
            AllowTrailingCommas = true,
            UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
            NumberHandling = JsonNumberHandling.Strict,
            TypeInfoResolver = new DefaultJsonTypeInfoResolver(),
        };
        options.Converters.Add(new JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower, allowIntegerValues: false));
        options.MakeReadOnly();
        return options;
    }
}

[JsonSerializable(typeof(JsonNode))]
[JsonSerializable(typeof(JsonElement))]
internal sealed partial class PolicyJsonContext : JsonSerializerContext;
