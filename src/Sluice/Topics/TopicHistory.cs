using System.Security.Cryptography;
using System.Text;

namespace Sluice
{
    /// <summary>The bounds of one topic's history: its latest <paramref name="Size"/> messages, none older than <paramref name="TimeToLive"/>.</summary>
    public readonly record struct TopicHistoryLimits(int Size, TimeSpan TimeToLive);

    /// <summary>
    /// A message to append to a topic's history. The stored and delivered message is the UTF-8 text
    /// <paramref name="Prefix"/>, the offset in decimal, <c>,"epoch":"</c>, the epoch, <c>"</c>, then
    /// <paramref name="Suffix"/>: the store assigns offset and epoch, so it writes them into the message.
    /// </summary>
    /// <param name="Prefix">The text before the offset, e.g. <c>{"op":"message","topic":"T","offset":</c>.</param>
    /// <param name="Suffix">The text after the epoch, e.g. <c>,"data":...}</c>.</param>
    /// <param name="ExcludeConnectionId">The id of a connection that must not receive the message (its publisher), or null.</param>
    public sealed record TopicHistoryMessage(ReadOnlyMemory<byte> Prefix, ReadOnlyMemory<byte> Suffix, string? ExcludeConnectionId);

    /// <summary>One message of a topic's history.</summary>
    public readonly record struct TopicHistoryEntry(long Offset, WebSocketMessage Message);

    /// <summary>What a topic's history holds after an offset.</summary>
    /// <param name="Epoch">The history's epoch: it changes when the history is lost (a restart, an expiry).</param>
    /// <param name="LastOffset">The offset of the latest message published on the topic in this epoch (0 for none).</param>
    /// <param name="Entries">The held messages after the offset asked for, in order; the ones trimmed or expired are missing.</param>
    public sealed record TopicHistoryRead(string Epoch, long LastOffset, IReadOnlyList<TopicHistoryEntry> Entries);

    /// <summary>Delivers a message of a topic with history to this node's subscribers, in offset order.</summary>
    public interface ITopicHistoryDelivery
    {
        /// <summary>Delivers <paramref name="message"/>, the message at <paramref name="offset"/> of <paramref name="topic"/>, to every local subscriber but <paramref name="excludeConnectionId"/>.</summary>
        void DeliverFromHistory(string topic, long offset, WebSocketMessage message, string? excludeConnectionId);
    }

    /// <summary>
    /// Keeps topics' history where every node reads it, assigns offsets and delivers messages to every node in offset
    /// order (Sluice.Redis implements it with Redis streams). Without one, history lives in the node's memory.
    /// </summary>
    public interface ITopicHistoryBackplane
    {
        /// <summary>Called once by the topic bus: where messages are to be delivered.</summary>
        void Attach(ITopicHistoryDelivery delivery);

        /// <summary>Appends <paramref name="message"/> to the history of <paramref name="topic"/> and delivers it on every node, this one included.</summary>
        ValueTask PublishAsync(string topic, TopicHistoryMessage message, TopicHistoryLimits limits, CancellationToken cancellationToken);

        /// <summary>Reads the held messages of <paramref name="topic"/> after <paramref name="afterOffset"/>, with the current epoch.</summary>
        ValueTask<TopicHistoryRead> ReadAsync(string topic, long afterOffset, TopicHistoryLimits limits, CancellationToken cancellationToken);

        /// <summary>Completes once messages published on <paramref name="topic"/> reach this node (it has a local subscriber).</summary>
        ValueTask WaitUntilReceivingAsync(string topic, CancellationToken cancellationToken);
    }

    /// <summary>Who is subscribed to which topic on every node (Sluice.Redis implements it); without one, presence is the node's own.</summary>
    public interface ITopicPresenceBackplane
    {
        /// <summary>Records that connection <paramref name="connectionId"/> of <paramref name="subject"/> subscribed to <paramref name="topic"/> on this node.</summary>
        ValueTask JoinAsync(string topic, string connectionId, string? subject, CancellationToken cancellationToken);

        /// <summary>Records that connection <paramref name="connectionId"/> left <paramref name="topic"/>.</summary>
        ValueTask LeaveAsync(string topic, string connectionId, CancellationToken cancellationToken);

        /// <summary>Lists the subject (null when anonymous) of every connection subscribed to <paramref name="topic"/> on a live node.</summary>
        ValueTask<IReadOnlyList<string?>> GetPresenceAsync(string topic, CancellationToken cancellationToken);
    }
}

namespace Sluice.Topics
{
    /// <summary>
    /// History in the node's memory: per topic, a counter, an epoch and the latest messages. Appending and delivering
    /// happen under the topic's lock, so subscribers receive offsets in order and a read sees every message delivered
    /// before it.
    /// </summary>
    internal sealed class InMemoryTopicHistory(TimeProvider time)
    {
        // Metadata (epoch, last offset) outlives the messages, so a client that missed nothing in a quiet hour still
        // recovers; a day idle and the topic is forgotten.
        private static readonly TimeSpan s_idleTopicLifetime = TimeSpan.FromDays(1);

        private readonly Dictionary<string, HeldTopic> _streams = new(StringComparer.Ordinal);
        private long _lastSweep;

        public void Append(string topic, TopicHistoryMessage message, TopicHistoryLimits limits, Action<long, WebSocketMessage> deliver)
        {
            var now = time.GetUtcNow();
            var stream = Get(topic, now);
            lock (stream)
            {
                var offset = ++stream.Last;
                var payload = Compose(message, offset, stream.Epoch);
                var text = WebSocketMessage.FromText(payload);
                stream.Entries.Enqueue((offset, now, text));
                stream.Touched = now;
                Trim(stream, limits, now);
                deliver(offset, text);
            }
        }

        public TopicHistoryRead Read(string topic, long after, TopicHistoryLimits limits)
        {
            var now = time.GetUtcNow();
            var stream = Get(topic, now);
            lock (stream)
            {
                Trim(stream, limits, now);
                var entries = stream.Entries.Where(e => e.Offset > after).Select(e => new TopicHistoryEntry(e.Offset, e.Message)).ToList();
                return new TopicHistoryRead(stream.Epoch, stream.Last, entries);
            }
        }

        public static byte[] Compose(TopicHistoryMessage message, long offset, string epoch)
        {
            var middle = Encoding.UTF8.GetBytes($"{offset},\"epoch\":\"{epoch}\"");
            var bytes = new byte[message.Prefix.Length + middle.Length + message.Suffix.Length];
            message.Prefix.Span.CopyTo(bytes);
            middle.CopyTo(bytes, message.Prefix.Length);
            message.Suffix.Span.CopyTo(bytes.AsSpan(message.Prefix.Length + middle.Length));
            return bytes;
        }

        /// <summary>A new epoch: random, short, and safe in JSON and Redis keys.</summary>
        public static string NewEpoch() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));

        private HeldTopic Get(string topic, DateTimeOffset now)
        {
            lock (_streams)
            {
                if (now.UtcTicks - _lastSweep > TimeSpan.TicksPerMinute)
                {
                    _lastSweep = now.UtcTicks;
                    foreach (var (name, idle) in _streams.Where(s => now - s.Value.Touched > s_idleTopicLifetime).ToList())
                    {
                        _streams.Remove(name);
                    }
                }

                if (!_streams.TryGetValue(topic, out var stream))
                {
                    stream = new HeldTopic(NewEpoch(), now);
                    _streams[topic] = stream;
                }

                return stream;
            }
        }

        private static void Trim(HeldTopic stream, TopicHistoryLimits limits, DateTimeOffset now)
        {
            while (stream.Entries.Count > limits.Size || (stream.Entries.TryPeek(out var oldest) && now - oldest.At > limits.TimeToLive))
            {
                stream.Entries.Dequeue();
            }
        }

        private sealed class HeldTopic(string epoch, DateTimeOffset touched)
        {
            public string Epoch { get; } = epoch;

            public long Last { get; set; }

            public DateTimeOffset Touched { get; set; } = touched;

            public Queue<(long Offset, DateTimeOffset At, WebSocketMessage Message)> Entries { get; } = new();
        }
    }
}
