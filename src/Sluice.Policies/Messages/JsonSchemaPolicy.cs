using System.Net.WebSockets;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Json.Schema;
using Sluice.Policies.Json;

namespace Sluice.Policies;

/// <summary>Options of <see cref="JsonSchemaPolicy"/> (<c>json-schema</c>).</summary>
public sealed class JsonSchemaPolicyOptions : ActionPolicyOptions
{
    /// <summary>Gets or sets the schema, inline. Give this or <see cref="SchemaFile"/>.</summary>
    public JsonNode? Schema { get; set; }

    /// <summary>Gets or sets the path of a file holding the schema, relative to the configuration file's folder.</summary>
    public string? SchemaFile { get; set; }

    /// <inheritdoc />
    public override IEnumerable<PolicyOptionError> Validate()
    {
        if ((Schema is null) == (SchemaFile is null))
        {
            yield return new("schema", "give exactly one of schema (inline) and schemaFile");
        }

        foreach (var error in base.Validate())
        {
            yield return error;
        }
    }
}

/// <summary>
/// <c>json-schema</c>: validates each message against a JSON Schema (draft 2020-12 by default, or the schema's
/// <c>$schema</c>), compiled once when the policy is created, with JsonSchema.Net. Non-JSON text and binary
/// messages are invalid. An invalid message is dropped, answered with 400 and the first error, or closes the
/// connection with 1007 (invalid payload).
/// </summary>
public sealed class JsonSchemaPolicy : MessagePolicy
{
    private static readonly EvaluationOptions s_flag = new() { OutputFormat = OutputFormat.Flag };
    private static readonly EvaluationOptions s_list = new() { OutputFormat = OutputFormat.List };

    private readonly JsonSchema _schema;
    private readonly SchemaFastPath? _fast;
    private readonly bool _guarded;
    private readonly PolicyAction _action;

    /// <summary>Creates the policy; <paramref name="baseDirectory"/> resolves a relative <c>schemaFile</c>.</summary>
    /// <exception cref="PolicyConfigurationException">The options are invalid, the file is missing or the schema does not compile.</exception>
    public JsonSchemaPolicy(JsonSchemaPolicyOptions options, string name = "json-schema", string? baseDirectory = null)
        : base(name)
    {
        ArgumentNullException.ThrowIfNull(options);
        PolicyValidation.ThrowIfInvalid(options, name);
        _action = options.Action;
        string text;
        if (options.SchemaFile is { } file)
        {
            var path = Path.GetFullPath(file, baseDirectory ?? Directory.GetCurrentDirectory());
            if (!File.Exists(path))
            {
                throw new PolicyConfigurationException(name, [new("schemaFile", $"'{file}' does not exist (looked for {path})")]);
            }

            text = File.ReadAllText(path);
        }
        else
        {
            text = options.Schema!.ToJsonString();
        }

        try
        {
            // A registry per policy: the same schema built again on a reload must not clash with the old one.
            _schema = JsonSchema.FromText(text, new BuildOptions { SchemaRegistry = new SchemaRegistry() });
            var node = JsonNode.Parse(text);
            _fast = SchemaFastPath.TryCompile(node);
            using (var document = JsonDocument.Parse(text))
            {
                _guarded = SchemaInputGuard.AppliesTo(document.RootElement);
            }
        }
        catch (Exception ex) when (ex is JsonException or JsonSchemaException or RefResolutionException or ArgumentException or InvalidOperationException)
        {
            throw new PolicyConfigurationException(name, [new(options.SchemaFile is null ? "schema" : "schemaFile", $"not a valid JSON Schema: {ex.Message}")]);
        }
    }

    /// <inheritdoc />
    protected override ValueTask ApplyAsync(MessageContext context, MessageDelegate next)
    {
        if (!context.TryGetJsonElement(out var root))
        {
            PolicyMetrics.NonJson(Name);
            Reject(context, _action, 400, context.Message.IsBinary ? "invalid message: binary, not JSON" : "invalid message: not JSON", WebSocketCloseStatus.InvalidPayloadData);
            return default;
        }

        string? error;
        try
        {
            error = Validate(root);
        }
        catch (Exception ex) when (ex is InvalidOperationException || ex.InnerException is InvalidOperationException)
        {
            // The guard has already refused lone surrogates, the known cause: whatever this is, the message is not
            // judged valid, and the reply does not guess why.
            error = "a value could not be read to check it";
        }
        catch (RegexMatchTimeoutException)
        {
            // A pattern that backtracks on this string: the process-wide match timeout (the gateway sets one) stopped it.
            error = "a string took too long to match a pattern of the schema";
        }

        if (error is null)
        {
            return next(context);
        }

        Reject(context, _action, 400, "invalid message: " + error, WebSocketCloseStatus.InvalidPayloadData);
        return default;
    }

    /// <summary>Null when valid, or why not.</summary>
    private string? Validate(JsonElement root)
    {
        // Values JsonSchema.Net cannot evaluate safely (a stack overflow cannot be caught) never reach it. First: the
        // duplicate check below reads names, and a lone surrogate in one (\udc00) would make it throw.
        if (SchemaInputGuard.Check(root, numbers: _guarded) is { } unsafeValue)
        {
            return unsafeValue;
        }

        // A name given twice is ambiguous: JsonSchema.Net would judge the first value, the backend's parser (like
        // JavaScript's and Python's) keeps the last. A validated message must mean one thing.
        if (JsonPointers.HasDuplicateNames(root))
        {
            return "a property name appears twice in one object";
        }

        // The fast path accepts what it can prove valid; JsonSchema.Net decides the rest and explains rejections.
        if (_fast?.Evaluate(root) == FastVerdict.Valid)
        {
            return null;
        }

        try
        {
            return _schema.Evaluate(root, s_flag).IsValid ? null : FirstError(root);
        }
        catch (Exception ex) when (ex is FormatException or OverflowException)
        {
            // JsonSchema.Net compares some numbers as decimals and throws past decimal's range (found by
            // SchemaFastPathTests): a message that cannot be validated is not valid.
            return "a number is out of the range the schema can be checked with";
        }
    }

    private string FirstError(JsonElement root)
    {
        // Only a failing message pays for the detailed evaluation.
        var results = _schema.Evaluate(root, s_list);
        foreach (var detail in results.Details ?? [])
        {
            if (detail.Errors is { Count: > 0 } errors)
            {
                // Both come from the message (a long name, a list of every duplicate pair): MessagePolicy cuts the whole
                // text too, but a long location must not push out the error.
                var location = MessagePolicy.Shorten(detail.InstanceLocation.ToString(), 128);
                return $"{(location.Length == 0 ? "/" : location)}: {errors.First().Value}";
            }
        }

        return "does not match the schema";
    }
}
