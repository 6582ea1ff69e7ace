using Microsoft.Extensions.Logging;

namespace Sluice.Gateway.Admin;

/// <summary>A recent event the dashboard shows: what was dropped or rejected, by which policy, and why.</summary>
internal sealed record OutcomeEvent(DateTimeOffset At, string Kind, string Route, string? Policy, string? Direction, string? ConnectionId, string? Reason);

/// <summary>
/// Turns Sluice's own structured log events (stopped messages, failed interceptors, rejected upgrades, unreachable
/// backends) into the dashboard's feed of recent outcomes. A logging provider, so the events come from the one place
/// that already describes them, with a filter of its own that lets it see debug events the console does not print.
/// </summary>
internal sealed class OutcomeFeed : ILoggerProvider
{
    public const int Capacity = 200;

    private readonly Queue<OutcomeEvent> _events = new();
    private readonly Dictionary<string, (DateTimeOffset At, string Reason)> _backendFailures = new(StringComparer.Ordinal);

    public IReadOnlyList<OutcomeEvent> Recent(int count)
    {
        lock (_events)
        {
            return [.. _events.Reverse().Take(count)];
        }
    }

    public (DateTimeOffset At, string Reason)? LastBackendFailure(string route)
    {
        lock (_events)
        {
            return _backendFailures.TryGetValue(route, out var failure) ? failure : null;
        }
    }

    public ILogger CreateLogger(string categoryName) => new Logger(this);

    public void Dispose()
    {
    }

    private void Add(OutcomeEvent item)
    {
        lock (_events)
        {
            _events.Enqueue(item);
            while (_events.Count > Capacity)
            {
                _events.Dequeue();
            }

            if (item.Kind == "backend")
            {
                _backendFailures[item.Route] = (item.At, item.Reason ?? string.Empty);
            }
        }
    }

    private sealed class Logger(OutcomeFeed feed) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (eventId.Id is not (103 or 200 or 201 or 300 or 301 or 302) || state is not IReadOnlyList<KeyValuePair<string, object?>> values)
            {
                return;
            }

            string? Get(string name)
            {
                foreach (var (key, value) in values)
                {
                    if (key == name)
                    {
                        return value?.ToString();
                    }
                }

                return null;
            }

            var item = eventId.Id switch
            {
                201 => new OutcomeEvent(DateTimeOffset.UtcNow, Get("Outcome")?.ToLowerInvariant() ?? "dropped", Get("Route") ?? "?", Get("Interceptor"), Get("Direction")?.ToLowerInvariant(), Get("ConnectionId"), Get("Reason")),
                200 => new OutcomeEvent(DateTimeOffset.UtcNow, "failed", Get("Route") ?? "?", Get("Interceptor"), Get("Direction")?.ToLowerInvariant(), Get("ConnectionId"), exception?.Message),
                103 => new OutcomeEvent(DateTimeOffset.UtcNow, "rejected", Get("Route") ?? "?", null, "upgrade", null, $"{Get("StatusCode")} {Get("Reason")}"),
                301 => new OutcomeEvent(DateTimeOffset.UtcNow, "backend", Get("Route") ?? "?", null, null, null, Get("Failures")),
                302 => new OutcomeEvent(DateTimeOffset.UtcNow, "backend", Get("Route") ?? "?", null, null, null, "no target is healthy"),
                _ => new OutcomeEvent(DateTimeOffset.UtcNow, "backend", Get("Route") ?? "?", null, null, null, Get("Reason")),
            };
            feed.Add(item);
        }
    }
}
