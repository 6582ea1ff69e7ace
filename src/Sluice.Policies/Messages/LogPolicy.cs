using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Pointer;
using Microsoft.Extensions.Logging;
using Sluice.Policies.Json;

namespace Sluice.Policies;

/// <summary>Options of <see cref="LogPolicy"/> (<c>log</c>).</summary>
public sealed class LogPolicyOptions : IPolicyOptions
{
    /// <summary>Gets or sets the log level. Default: information.</summary>
    public LogLevel Level { get; set; } = LogLevel.Information;

    /// <summary>Gets or sets the share of messages logged, from 0 to 1. Default: 1 (every message).</summary>
    public double Sample { get; set; } = 1;

    /// <summary>Gets or sets JSON Pointers masked (<c>"***"</c>) in the logged payload; the message itself is untouched.</summary>
    public List<string> Redact { get; set; } = [];

    /// <summary>
    /// Gets or sets whether the payload is logged (JSON redacted as configured, other text cut to 1,024
    /// characters, binary never). Default: true. Without it only direction, size, route and subject are logged.
    /// </summary>
    public bool Payload { get; set; } = true;

    /// <summary>
    /// Gets or sets the control frames logged besides data messages: <c>ping</c>, <c>pong</c>, <c>close</c> (type, and
    /// for a close its code and, when <see cref="Payload"/> is on, its reason). Default: none.
    /// </summary>
    public List<string> Frames { get; set; } = [];

    /// <inheritdoc />
    public IEnumerable<PolicyOptionError> Validate()
    {
        foreach (var error in ControlFrameOptions.Validate(Frames))
        {
            yield return error;
        }

        if (!Enum.IsDefined(Level) || Level == LogLevel.None)
        {
            yield return new("level", "must be trace, debug, information, warning, error or critical");
        }

        if (Sample is < 0 or > 1 || double.IsNaN(Sample))
        {
            yield return new("sample", "must be between 0 and 1");
        }

        for (var i = 0; i < Redact.Count; i++)
        {
            if (!JsonPointers.IsValid(Redact[i]) || Redact[i].Length == 0)
            {
                yield return new($"redact[{i}]", $"'{Redact[i]}' is not a JSON Pointer to a field");
            }
        }
    }
}

/// <summary>
/// <c>log</c>: a structured log event per message (or per sampled message): direction, size, route, subject,
/// connection id and, if asked, the payload with the configured fields masked. Headers, keys and tokens are
/// never logged. The message goes on unchanged.
/// </summary>
public sealed partial class LogPolicy : MessagePolicy
{
    private const int MaxTextChars = 1024;

    private readonly LogPolicyOptions _options;
    private readonly JsonPointer[] _redact;
    private readonly ILogger _logger;

    /// <summary>Creates the policy, logging to the category <c>Sluice.Policies.Log</c>.</summary>
    public LogPolicy(LogPolicyOptions options, ILoggerFactory loggerFactory, string name = "log")
        : base(name)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        PolicyValidation.ThrowIfInvalid(options, name);
        _options = options;
        _redact = [.. options.Redact.Select((p, i) => JsonPointers.Parse(p, $"redact[{i}]"))];
        _logger = loggerFactory.CreateLogger("Sluice.Policies.Log");
        ControlFrames = ControlFrameOptions.Parse(options.Frames);
    }

    /// <inheritdoc />
    public override ControlFrames ControlFrames { get; }

    /// <inheritdoc />
    protected override ValueTask ApplyAsync(MessageContext context, MessageDelegate next)
    {
        if (_logger.IsEnabled(_options.Level) && (_options.Sample >= 1 || Random.Shared.NextDouble() < _options.Sample))
        {
            var connection = context.Connection;
            var message = context.Message;
            if (message.IsControl)
            {
                // Already under IsEnabled: the arguments are worked out only for a frame that is logged.
                var frame = FrameName(message.Type);
                int? code = message.CloseStatus is { } status ? (int)status : null;
                var reason = _options.Payload ? message.CloseDescription : null;
                Log.Frame(_logger, _options.Level, Name, context.Direction, frame, code, reason, connection.RoutePattern, connection.Subject, connection.Id);
                return next(context);
            }

            Log.Message(_logger, _options.Level, Name, context.Direction, message.IsText ? "text" : "binary", message.Length, connection.RoutePattern,
                connection.Subject, connection.Id, _options.Payload ? SafeDescribe(context) : null);
        }

        return next(context);
    }

    private static string FrameName(MessageType type) => type switch
    {
        MessageType.Close => "close",
        MessageType.Ping => "ping",
        _ => "pong",
    };

    private string? SafeDescribe(MessageContext context)
    {
        try
        {
            return Describe(context);
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        {
            // An observer never fails the message it observes: input this policy did not foresee is not logged, nothing more.
            return "(payload could not be read, not logged)";
        }
    }

    private string? Describe(MessageContext context)
    {
        if (context.Message.IsBinary)
        {
            return null;
        }

        if (!context.TryGetJsonElement(out var root))
        {
            if (_redact.Length > 0 && LenientJson.LooksLikeContainer(context))
            {
                // Near-JSON (comments, NaN) must not put the fields to redact into the log.
                using var lenient = LenientJson.TryParse(context.Message.Payload);
                return lenient is null ? "(unparsable JSON, not logged)" : Redacted(lenient.RootElement);
            }

            var text = context.Message.Text;
            return text.Length <= MaxTextChars ? text : string.Concat(text.AsSpan(0, MaxTextChars), "…");
        }

        return _redact.Length == 0 ? root.GetRawText() : Redacted(root);
    }

    private string Redacted(JsonElement root)
    {
        if (!JsonText.IsValidUnicode(root))
        {
            // A lone UTF-16 surrogate (\udc00) cannot be copied to mask it: say so rather than fail the message.
            return "(not valid Unicode, not logged)";
        }

        // Mask a copy: the message that goes on is not this policy's to change.
        var copy = JsonSerializer.SerializeToNode(root, PolicyJson.ElementTypeInfo);
        foreach (var path in _redact)
        {
            JsonPointers.Replace(copy, path, JsonValue.Create("***"));
        }

        return copy?.ToJsonString() ?? "null";
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 600, Message = "{Policy}: {Direction} {Opcode} message, {Size} bytes, on {Route} from {Subject} ({ConnectionId}) {Payload}")]
        public static partial void Message(ILogger logger, LogLevel level, string policy, MessageDirection direction, string opcode, int size, string route, string? subject, string connectionId, string? payload);

        [LoggerMessage(EventId = 601, Message = "{Policy}: {Direction} {Frame} frame, code {CloseCode}, reason {CloseReason}, on {Route} from {Subject} ({ConnectionId})")]
        public static partial void Frame(ILogger logger, LogLevel level, string policy, MessageDirection direction, string frame, int? closeCode, string? closeReason, string route, string? subject, string connectionId);
    }
}
