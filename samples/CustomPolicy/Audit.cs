using System.Net.WebSockets;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Sluice;
using Sluice.Policies;

namespace MyCompany.Policies;

/// <summary>The options of <see cref="Audit"/>, bound from the gateway file's <c>options</c> like a built-in's.</summary>
public sealed class AuditOptions : IPolicyOptions
{
    /// <summary>Gets or sets the value stamped into JSON messages at <c>/audit</c>.</summary>
    public string Tag { get; set; } = "audited";

    /// <summary>Gets or sets words that are not allowed: a message holding one is answered with 400.</summary>
    public List<string> Forbidden { get; set; } = [];

    /// <inheritdoc />
    public IEnumerable<PolicyOptionError> Validate()
    {
        if (string.IsNullOrWhiteSpace(Tag))
        {
            yield return new("tag", "must not be empty");
        }
    }
}

/// <summary>
/// A custom message policy: refuses forbidden words and stamps JSON messages. Its constructor takes its options,
/// its name and any service of the gateway (here a logger); the gateway supplies all three.
/// </summary>
public sealed partial class Audit(AuditOptions options, string name, ILogger<Audit> logger) : MessagePolicy(name)
{
    /// <inheritdoc />
    protected override ValueTask ApplyAsync(MessageContext context, MessageDelegate next)
    {
        if (context.Message.IsText && options.Forbidden.Find(w => context.Message.Text.Contains(w, StringComparison.OrdinalIgnoreCase)) is { } word)
        {
            Log.Refused(logger, Name, context.Connection.Id);
            Reject(context, PolicyAction.Reply, 400, $"the word '{word}' is not allowed", WebSocketCloseStatus.PolicyViolation);
            return default;
        }

        if (context.Json is JsonObject json)
        {
            json["audit"] = options.Tag;
            context.MarkJsonModified();
        }

        return next(context);
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "{Policy} refused a message of connection {ConnectionId}.")]
        public static partial void Refused(ILogger logger, string policy, string connectionId);
    }
}

/// <summary>The options of <see cref="Shout"/>.</summary>
public sealed class ShoutOptions
{
    /// <summary>Gets or sets what each reply starts with.</summary>
    public string Prefix { get; set; } = "";
}

/// <summary>A custom handler (<c>"handler": { "type": "MyCompany.Policies.Shout, MyCompany.Policies" }</c>): answers in capitals.</summary>
public sealed class Shout(ShoutOptions options) : IMessageHandler
{
    /// <inheritdoc />
    public ValueTask<object?> HandleAsync(MessageContext context) =>
        new(context.Message.IsText ? options.Prefix + context.Message.Text.ToUpperInvariant() : context.Message);
}
