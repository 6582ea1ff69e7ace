using System.Text.Json;
using System.Text.Json.Nodes;
using Sluice.Gateway.Configuration.Model;

namespace Sluice.Gateway.Configuration;

/// <summary>What reading a file gives: the model (null if the file is not an object), and where each value is.</summary>
internal sealed record ReadFile(GatewayFile? Model, JsonPositions Positions, SecretValues Secrets);

/// <summary>
/// Reads a gateway file into its model: JSON with comments and trailing commas; <c>env:NAME</c> strings replaced by
/// the variable's value (remembered as a secret); then <see cref="ModelReader"/>.
/// </summary>
internal static class ConfigReader
{
    private static readonly JsonDocumentOptions s_documentOptions = new() { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true, MaxDepth = 64 };
    private static readonly JsonNodeOptions s_nodeOptions = new() { PropertyNameCaseInsensitive = false };

    public static ReadFile Read(string text, ConfigErrors errors)
    {
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(text, s_nodeOptions, s_documentOptions);
        }
        catch (JsonException ex)
        {
            errors.Add("(file)", $"not valid JSON at line {(ex.LineNumber ?? 0) + 1}, position {(ex.BytePositionInLine ?? 0) + 1}: {FirstSentence(ex.Message)}");
            return new ReadFile(null, JsonPositions.Empty, new SecretValues());
        }

        var secrets = new SecretValues();
        ResolveEnvironment(root, string.Empty, errors, secrets);
        return new ReadFile(new ModelReader(errors).ReadFile(root), JsonPositions.Of(root), secrets);
    }

    public static string FirstSentence(string message)
    {
        var end = message.IndexOf(". ", StringComparison.Ordinal);
        return (end > 0 ? message[..end] : message).TrimEnd('.');
    }

    private static void ResolveEnvironment(JsonNode? node, string path, ConfigErrors errors, SecretValues secrets)
    {
        switch (node)
        {
            case JsonObject obj:
                foreach (var (key, child) in obj.ToList())
                {
                    var at = ModelReader.Join(path, key);
                    if (IsReference(child, out var reference))
                    {
                        obj[key] = Resolve(reference, at, errors, secrets);
                    }
                    else
                    {
                        ResolveEnvironment(child, at, errors, secrets);
                    }
                }

                break;
            case JsonArray array:
                for (var i = 0; i < array.Count; i++)
                {
                    if (IsReference(array[i], out var reference))
                    {
                        array[i] = Resolve(reference, $"{path}[{i}]", errors, secrets);
                    }
                    else
                    {
                        ResolveEnvironment(array[i], $"{path}[{i}]", errors, secrets);
                    }
                }

                break;
        }
    }

    private static bool IsReference(JsonNode? node, out string reference)
    {
        reference = string.Empty;
        if (node is JsonValue value && value.TryGetValue(out string? text) && text.StartsWith("env:", StringComparison.Ordinal))
        {
            reference = text;
            return true;
        }

        return false;
    }

    private static JsonValue Resolve(string reference, string path, ConfigErrors errors, SecretValues secrets)
    {
        var name = reference[4..];
        var value = Environment.GetEnvironmentVariable(name);
        if (string.IsNullOrEmpty(value))
        {
            // The value stays "env:NAME" so that later checks do not pile up errors about it; the error says why.
            errors.AddEnvironment(path, $"environment variable {name} is not set");
            return JsonValue.Create(reference);
        }

        secrets.Add(value, name);
        return JsonValue.Create(value);
    }
}

/// <summary>
/// Where each JSON path is in the file, so that errors found in any order are listed in the order of the file. A path
/// that is not in the file (a missing required key) sorts after everything its parent holds.
/// </summary>
internal sealed class JsonPositions
{
    private readonly Dictionary<string, (int Start, int End)> _positions = new(StringComparer.Ordinal);

    public static JsonPositions Empty { get; } = new();

    public static JsonPositions Of(JsonNode? root)
    {
        var positions = new JsonPositions();
        var next = 0;
        positions.Visit(root, string.Empty, ref next);
        return positions;
    }

    public double Of(string path)
    {
        if (_positions.TryGetValue(path, out var position))
        {
            return position.Start;
        }

        var parent = Parent(path);
        return parent is null ? int.MaxValue : _positions.TryGetValue(parent, out var enclosing) ? enclosing.End + 0.5 : Of(parent);
    }

    private static string? Parent(string path)
    {
        var cut = Math.Max(path.LastIndexOf('.'), path.LastIndexOf('['));
        return cut > 0 ? path[..cut] : path.Length > 0 && path != "(file)" ? string.Empty : null;
    }

    private void Visit(JsonNode? node, string path, ref int next)
    {
        var start = next++;
        switch (node)
        {
            case JsonObject obj:
                foreach (var (key, child) in obj)
                {
                    Visit(child, ModelReader.Join(path, key), ref next);
                }

                break;
            case JsonArray array:
                for (var i = 0; i < array.Count; i++)
                {
                    Visit(array[i], $"{path}[{i}]", ref next);
                }

                break;
        }

        _positions[path] = (start, next - 1);
    }
}
