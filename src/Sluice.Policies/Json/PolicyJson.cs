using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;

namespace Sluice.Policies.Json;

/// <summary>JSON settings shared by the policies: how options are read and how JSON values are handled.</summary>
public static class PolicyJson
{
    /// <summary>
    /// The serializer options that bind policy options from the gateway file's camelCase JSON: names are
    /// case-insensitive, enums are camelCase strings, comments and trailing commas are allowed, and an unknown
    /// member is an error (a typo in an option name must not be silently ignored).
    /// </summary>
    public static JsonSerializerOptions OptionsBinding { get; } = CreateOptionsBinding();

    internal static JsonTypeInfo<JsonNode> NodeTypeInfo { get; } = (JsonTypeInfo<JsonNode>)OptionsBinding.GetTypeInfo(typeof(JsonNode));

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
