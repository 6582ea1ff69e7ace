using System.Collections.Concurrent;
using System.Globalization;

namespace Sluice;

/// <summary>The open connections of the app, hosted and proxied, for admin tools and broadcasts.</summary>
public interface IWebSocketConnectionRegistry
{
    /// <summary>Gets the number of open connections.</summary>
    int Count { get; }

    /// <summary>Gets the most connections the process accepts at once (<see cref="SluiceOptions.MaxConnections"/>).</summary>
    int MaxConnections { get; }

    /// <summary>Finds an open connection by its <see cref="WebSocketConnection.Id"/>.</summary>
    bool TryGet(string id, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out WebSocketConnection? connection);

    /// <summary>Lists open connections, optionally only those of a route pattern and/or a subject.</summary>
    IReadOnlyList<WebSocketConnection> List(string? routePattern = null, string? subject = null);
}

internal sealed class WebSocketConnectionRegistry : IWebSocketConnectionRegistry
{
    private readonly ConcurrentDictionary<string, WebSocketConnection> _connections = new(StringComparer.Ordinal);
    private int _reserved;

    public WebSocketConnectionRegistry(ConnectionBudget budget)
    {
        MaxConnections = budget.MaxConnections;
    }

    public int Count => _connections.Count;

    public int MaxConnections { get; }

    /// <summary>Set when the app is stopping: new upgrades are refused with 503.</summary>
    public bool IsStopping { get; private set; }

    public bool TryGet(string id, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out WebSocketConnection? connection) =>
        _connections.TryGetValue(id, out connection);

    public IReadOnlyList<WebSocketConnection> List(string? routePattern = null, string? subject = null)
    {
        var result = new List<WebSocketConnection>();
        foreach (var connection in _connections.Values)
        {
            if ((routePattern is null || string.Equals(connection.RoutePattern, routePattern, StringComparison.Ordinal))
                && (subject is null || string.Equals(connection.Subject, subject, StringComparison.Ordinal)))
            {
                result.Add(connection);
            }
        }

        return result;
    }

    /// <summary>Takes one of the <see cref="MaxConnections"/> places, before anything is opened for a newcomer.</summary>
    public bool TryReserve()
    {
        if (Interlocked.Increment(ref _reserved) > MaxConnections)
        {
            Interlocked.Decrement(ref _reserved);
            return false;
        }

        return true;
    }

    public void ReleaseReservation() => Interlocked.Decrement(ref _reserved);

    public void Add(WebSocketConnection connection) => _connections[connection.Id] = connection;

    public void Remove(WebSocketConnection connection) => _connections.TryRemove(connection.Id, out _);

    public ICollection<WebSocketConnection> Snapshot() => _connections.Values;

    public void MarkStopping() => IsStopping = true;
}

/// <summary>Reads the process's soft limit on open files (RLIMIT_NOFILE) from /proc on Linux.</summary>
internal static class OpenFileLimit
{
    /// <summary>Used where the limit cannot be read (not Linux): a conservative, common value.</summary>
    public const long Fallback = 8192;

    /// <summary>The descriptors the process holds now (0 where /proc cannot tell).</summary>
    public static long OpenNow()
    {
        try
        {
            return Directory.EnumerateFileSystemEntries("/proc/self/fd").LongCount();
        }
        catch (IOException)
        {
            return 0;
        }
        catch (UnauthorizedAccessException)
        {
            return 0;
        }
    }

    public static long Read()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/limits"))
            {
                if (line.StartsWith("Max open files", StringComparison.Ordinal))
                {
                    var fields = line["Max open files".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
                    if (fields.Length > 0 && fields[0] == "unlimited")
                    {
                        return 1 << 20;
                    }

                    if (fields.Length > 0 && long.TryParse(fields[0], NumberStyles.None, CultureInfo.InvariantCulture, out var soft))
                    {
                        return soft;
                    }
                }
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        return Fallback;
    }
}
