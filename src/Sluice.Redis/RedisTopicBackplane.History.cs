using System.Buffers.Text;
using System.Collections.Concurrent;
using System.Text;
using StackExchange.Redis;
using System.Security.Cryptography;

namespace Sluice.Redis;

/// <summary>
/// Topic history in Redis: per topic a stream <c>{prefix}:history:{T}</c> (entry id <c>0-offset</c>, fields
/// <c>t</c> = publish time in ms and <c>m</c> = the message) and a hash <c>{prefix}:history-meta:{T}</c> with the epoch
/// (<c>e</c>) and the last offset (<c>o</c>). One Lua script assigns the offset, appends and PUBLISHes, so Redis's
/// order of the topic channel is the order of the offsets, on every node, the publishing one included.
/// </summary>
internal sealed partial class RedisTopicBackplane : ITopicHistoryBackplane
{
    private const byte HistoryEnvelopeVersion = 3;

    // The metadata outlives the messages: a client that missed nothing in a quiet hour keeps its epoch.
    private static readonly TimeSpan s_metaLifetime = TimeSpan.FromDays(1);

    private static readonly LuaScript s_publish = LuaScript.Prepare("""
        local epoch = redis.call('HGET', @meta, 'e')
        if not epoch then
          epoch = @newEpoch
          redis.call('HSET', @meta, 'e', epoch)
          redis.call('DEL', @stream)
        end
        local offset = redis.call('HINCRBY', @meta, 'o', 1)
        local payload = @prefix .. offset .. ',"epoch":"' .. epoch .. '"' .. @suffix
        redis.call('XADD', @stream, 'MAXLEN', @size, '0-' .. offset, 't', @now, 'm', payload)
        redis.call('PEXPIRE', @stream, @ttlMs)
        redis.call('EXPIRE', @meta, @metaTtl)
        redis.call('PUBLISH', @channel, @header .. offset .. '\n' .. payload)
        return offset
        """);

    private static readonly LuaScript s_read = LuaScript.Prepare("""
        local epoch = redis.call('HGET', @meta, 'e')
        if not epoch then
          epoch = @newEpoch
          redis.call('HSET', @meta, 'e', epoch)
          redis.call('EXPIRE', @meta, @metaTtl)
          redis.call('DEL', @stream)
        end
        local last = tonumber(redis.call('HGET', @meta, 'o') or '0')
        local entries = {}
        if tonumber(@after) < last then
          entries = redis.call('XRANGE', @stream, '(0-' .. @after, '+', 'COUNT', @size)
        end
        return {epoch, last, entries}
        """);

    private readonly ConcurrentDictionary<string, TaskCompletionSource> _receiving = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<(string, long, TopicHistoryLimits), SharedRead> _pendingReads = new();
    private readonly SemaphoreSlim _readSlots = new(16);
    private ITopicHistoryDelivery? _historyDelivery;

    public void Attach(ITopicHistoryDelivery delivery) => _historyDelivery = delivery;

    async ValueTask ITopicHistoryBackplane.PublishAsync(string topic, TopicHistoryMessage message, TopicHistoryLimits limits, CancellationToken cancellationToken)
    {
        var database = Database();
        var header = new byte[1 + Encoding.UTF8.GetByteCount(message.ExcludeConnectionId ?? string.Empty) + 1];
        header[0] = HistoryEnvelopeVersion;
        Encoding.UTF8.GetBytes(message.ExcludeConnectionId ?? string.Empty, header.AsSpan(1));
        header[^1] = (byte)'\n';
        try
        {
            await database.ScriptEvaluateAsync(s_publish, new
            {
                meta = HistoryMetaKey(topic),
                stream = HistoryKey(topic),
                newEpoch = NewEpoch(),
                prefix = message.Prefix.ToArray(),
                suffix = message.Suffix.ToArray(),
                size = limits.Size,
                now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(),
                ttlMs = (long)limits.TimeToLive.TotalMilliseconds,
                metaTtl = (long)Math.Max(limits.TimeToLive.TotalSeconds, s_metaLifetime.TotalSeconds),
                channel = ChannelPrefix + topic,
                header,
            });
            _published.Add(1);
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            CountLost(topic, ex);
            throw;
        }
    }

    /// <summary>
    /// Reads the history; clients recovering the same topic from the same offset at the same moment (a node
    /// restart, a network blip) share one read. A caller joins only a read not yet sent, so the read still happens
    /// after its subscription and misses nothing it needs; distinct reads are limited in number, so that a
    /// thousand replays do not queue behind each other on the connection until they time out.
    /// </summary>
    public async ValueTask<TopicHistoryRead> ReadAsync(string topic, long afterOffset, TopicHistoryLimits limits, CancellationToken cancellationToken)
    {
        var key = (topic, afterOffset, limits);
        SharedRead read;
        bool first;
        while (true)
        {
            read = _pendingReads.GetOrAdd(key, static _ => new SharedRead());
            lock (read)
            {
                if (!read.Sent)
                {
                    first = read.Joined++ == 0;
                    break;
                }
            }

            _pendingReads.TryRemove(new KeyValuePair<(string, long, TopicHistoryLimits), SharedRead>(key, read));
        }

        if (first)
        {
            await _readSlots.WaitAsync(cancellationToken);
            try
            {
                lock (read)
                {
                    read.Sent = true;
                }

                _pendingReads.TryRemove(new KeyValuePair<(string, long, TopicHistoryLimits), SharedRead>(key, read));
                read.Result.TrySetResult(await ReadOnceAsync(topic, afterOffset, limits));
            }
            catch (Exception ex)
            {
                read.Result.TrySetException(ex);
            }
            finally
            {
                _readSlots.Release();
            }
        }

        return await read.Result.Task.WaitAsync(cancellationToken);
    }

    private async Task<TopicHistoryRead> ReadOnceAsync(string topic, long afterOffset, TopicHistoryLimits limits)
    {
        var database = Database();
        var result = await database.ScriptEvaluateAsync(s_read, new
        {
            meta = HistoryMetaKey(topic),
            stream = HistoryKey(topic),
            newEpoch = NewEpoch(),
            metaTtl = (long)Math.Max(limits.TimeToLive.TotalSeconds, s_metaLifetime.TotalSeconds),
            after = afterOffset.ToString(System.Globalization.CultureInfo.InvariantCulture),
            size = limits.Size,
        });
        var parts = (RedisResult[])result!;
        var epoch = (string)parts[0]!;
        var last = (long)parts[1];
        var oldest = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - (long)limits.TimeToLive.TotalMilliseconds;
        var entries = new List<TopicHistoryEntry>();
        foreach (RedisResult entry in (RedisResult[])parts[2]!)
        {
            var pair = (RedisResult[])entry!;
            var id = (string)pair[0]!;
            var fields = (RedisResult[])pair[1]!;
            long at = 0;
            byte[]? message = null;
            for (var i = 0; i + 1 < fields.Length; i += 2)
            {
                switch ((string)fields[i]!)
                {
                    case "t":
                        at = (long)fields[i + 1];
                        break;
                    case "m":
                        message = (byte[])fields[i + 1]!;
                        break;
                }
            }

            // Older than the history's age: gone, even if Redis has not expired the stream yet.
            if (message is not null && at >= oldest)
            {
                entries.Add(new TopicHistoryEntry(long.Parse(id.AsSpan(id.IndexOf('-') + 1), System.Globalization.CultureInfo.InvariantCulture), WebSocketMessage.FromText(message)));
            }
        }

        return new TopicHistoryRead(epoch, last, entries);
    }

    public async ValueTask WaitUntilReceivingAsync(string topic, CancellationToken cancellationToken)
    {
        var signal = _receiving.GetOrAdd(topic, static _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
        await signal.Task.WaitAsync(TimeSpan.FromSeconds(10), cancellationToken);
    }

    /// <summary>The reconciler subscribed the topic's channel: its messages reach this node from now on.</summary>
    private void MarkReceiving(string topic) =>
        _receiving.GetOrAdd(topic, static _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();

    private void ForgetReceiving(string topic)
    {
        if (_receiving.TryGetValue(topic, out var signal) && signal.Task.IsCompleted)
        {
            _receiving.TryRemove(new KeyValuePair<string, TaskCompletionSource>(topic, signal));
        }
    }

    private void ReceiveHistory(string topic, byte[] envelope)
    {
        // [3][excluded connection id]\n[offset]\n[message]
        var span = envelope.AsSpan(1);
        var first = span.IndexOf((byte)'\n');
        var second = first < 0 ? -1 : span[(first + 1)..].IndexOf((byte)'\n');
        if (second < 0 || !Utf8Parser.TryParse(span.Slice(first + 1, second), out long offset, out _))
        {
            _failures.Add(1, new KeyValuePair<string, object?>("operation", "decode"));
            return;
        }

        var exclude = first == 0 ? null : Encoding.UTF8.GetString(span[..first]);
        var message = WebSocketMessage.FromText(envelope.AsMemory(1 + first + 1 + second + 1));
        _received.Add(1);
        _historyDelivery?.DeliverFromHistory(topic, offset, message, exclude);
    }

    private static string NewEpoch() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));

    private IDatabase Database() => _redis?.GetDatabase() ?? throw new InvalidOperationException("the Redis backplane has not started");

    private RedisKey HistoryKey(string topic) => _options.ChannelPrefix + ":history:" + topic;

    private RedisKey HistoryMetaKey(string topic) => _options.ChannelPrefix + ":history-meta:" + topic;

    private sealed class SharedRead
    {
        public TaskCompletionSource<TopicHistoryRead> Result { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int Joined { get; set; }

        public bool Sent { get; set; }
    }
}
