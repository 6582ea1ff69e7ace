using System.Collections.Concurrent;
using StackExchange.Redis;

namespace Sluice.Redis;

/// <summary>
/// Presence in Redis: per topic a hash <c>{prefix}:presence:{T}</c>, field <c>{node}:{connection}</c>, value the
/// subject ("" when anonymous). Entries are node-scoped: a reader counts only nodes whose heartbeat key is alive and
/// deletes the others' entries, so a node that died without cleaning up drops out within the heartbeat's TTL.
/// </summary>
internal sealed partial class RedisTopicBackplane : ITopicPresenceBackplane
{
    private static readonly TimeSpan s_presenceLifetime = TimeSpan.FromDays(1);

    // This node's entries, to write them again when Redis comes back empty.
    private readonly ConcurrentDictionary<(string Topic, string Connection), string> _present = new();

    public async ValueTask JoinAsync(string topic, string connectionId, string? subject, CancellationToken cancellationToken)
    {
        _present[(topic, connectionId)] = subject ?? string.Empty;
        var database = Database();
        await database.HashSetAsync(PresenceKey(topic), PresenceField(connectionId), subject ?? string.Empty);
        await database.KeyExpireAsync(PresenceKey(topic), s_presenceLifetime);
    }

    public async ValueTask LeaveAsync(string topic, string connectionId, CancellationToken cancellationToken)
    {
        _present.TryRemove((topic, connectionId), out _);
        await Database().HashDeleteAsync(PresenceKey(topic), PresenceField(connectionId));
    }

    public async ValueTask<IReadOnlyList<string?>> GetPresenceAsync(string topic, CancellationToken cancellationToken)
    {
        var database = Database();
        var entries = await database.HashGetAllAsync(PresenceKey(topic));
        var alive = new Dictionary<string, bool>(StringComparer.Ordinal) { [_nodeField] = true };
        var result = new List<string?>();
        var dead = new List<RedisValue>();
        foreach (var entry in entries)
        {
            var field = (string)entry.Name!;
            var node = field[..Math.Max(0, field.IndexOf(':', StringComparison.Ordinal))];
            if (!alive.TryGetValue(node, out var live))
            {
                live = await database.KeyExistsAsync(NodeKey(node));
                alive[node] = live;
            }

            if (live)
            {
                var subject = (string?)entry.Value;
                result.Add(string.IsNullOrEmpty(subject) ? null : subject);
            }
            else
            {
                dead.Add(entry.Name);
            }
        }

        if (dead.Count > 0)
        {
            await database.HashDeleteAsync(PresenceKey(topic), [.. dead]);
        }

        return result;
    }

    /// <summary>Redis is back, maybe empty: write this node's presence again.</summary>
    private void RestorePresence() => _ = Task.Run(async () =>
    {
        try
        {
            var database = Database();
            foreach (var ((topic, connection), subject) in _present)
            {
                await database.HashSetAsync(PresenceKey(topic), PresenceField(connection), subject);
            }
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException or InvalidOperationException)
        {
            _failures.Add(1, new KeyValuePair<string, object?>("operation", "presence"));
        }
    });

    private async Task<bool> CleanupPresenceAsync(IDatabase database)
    {
        await Task.WhenAll(_present.Keys.Select(k => database.HashDeleteAsync(PresenceKey(k.Topic), PresenceField(k.Connection))));
        return true;
    }

    private string PresenceField(string connectionId) => _nodeField + ":" + connectionId;

    private RedisKey PresenceKey(string topic) => _options.ChannelPrefix + ":presence:" + topic;
}
