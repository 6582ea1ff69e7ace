using System.Text.Json;

namespace Sluice;

/// <summary>
/// Sends to users rather than connections: every connection of an authenticated subject, on every node of the
/// cluster (SignalR's <c>Clients.User</c>, Azure Web PubSub's <c>sendToUser</c>). Registered by <c>AddSluice</c>;
/// with <c>AddRedisBackplane</c> it reaches every node on the same Redis.
/// </summary>
public interface IWebSocketUsers
{
    /// <summary>
    /// Sends <paramref name="message"/> to every open connection whose <see cref="WebSocketConnection.Subject"/> is
    /// <paramref name="subject"/>, on every node, after the outbound chain (as
    /// <see cref="WebSocketConnection.SendToClientAsync"/>). Completes when every node answered or timed out.
    /// </summary>
    ValueTask<SubjectSendResult> SendToSubjectAsync(string subject, WebSocketMessage message, CancellationToken cancellationToken = default);
}

/// <summary>What <see cref="IWebSocketUsers.SendToSubjectAsync"/> reached.</summary>
public sealed class SubjectSendResult
{
    /// <summary>Creates a result.</summary>
    public SubjectSendResult(IReadOnlyDictionary<string, int> nodes, IReadOnlyList<string> missing)
    {
        Nodes = nodes;
        Missing = missing;
        Delivered = nodes.Values.Sum();
    }

    /// <summary>Gets how many connections got the message, on every node.</summary>
    public int Delivered { get; }

    /// <summary>Gets how many connections got the message on each node that answered, by node id.</summary>
    public IReadOnlyDictionary<string, int> Nodes { get; }

    /// <summary>Gets the nodes that did not answer in time: their connections of the subject may or may not have it.</summary>
    public IReadOnlyList<string> Missing { get; }

    /// <summary>Gets whether some node did not answer.</summary>
    public bool IsPartial => Missing.Count > 0;
}

/// <summary>Sends to a subject's connections through a cluster request answered by every node for its own connections.</summary>
internal sealed class WebSocketUsers : IWebSocketUsers, IDisposable
{
    public const string Operation = "sluice.subject.send";

    private readonly IWebSocketCluster _cluster;
    private readonly WebSocketConnectionRegistry _registry;
    private readonly IDisposable _registration;

    public WebSocketUsers(IWebSocketCluster cluster, WebSocketConnectionRegistry registry)
    {
        _cluster = cluster;
        _registry = registry;
        _registration = cluster.MapRequest(Operation, SendLocallyAsync);
    }

    public async ValueTask<SubjectSendResult> SendToSubjectAsync(string subject, WebSocketMessage message, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(subject);
        ArgumentNullException.ThrowIfNull(message);
        var request = JsonSerializer.Serialize(new SubjectSend(subject, message.IsText, message.Payload.ToArray()), UsersJson.Default.SubjectSend);
        var replies = await _cluster.RequestAsync(Operation, request, cancellationToken);
        var nodes = new Dictionary<string, int>(StringComparer.Ordinal);
        var missing = replies.Missing.ToList();
        foreach (var (node, reply) in replies.Replies)
        {
            if (int.TryParse(reply, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var count))
            {
                nodes[node] = count;
            }
            else
            {
                missing.Add(node);
            }
        }

        return new SubjectSendResult(nodes, missing);
    }

    public void Dispose() => _registration.Dispose();

    private async ValueTask<string> SendLocallyAsync(string payload, CancellationToken cancellationToken)
    {
        var request = JsonSerializer.Deserialize(payload, UsersJson.Default.SubjectSend) ?? throw new JsonException("an empty subject send");
        // One message for all: SendToClientAsync copies the payload into the leg's buffer.
        var message = request.Text ? WebSocketMessage.FromText(request.Data) : WebSocketMessage.FromBinary(request.Data);
        var sent = 0;
        foreach (var connection in _registry.List(subject: request.Subject))
        {
            if (connection.IsClosing)
            {
                continue;
            }

            await connection.SendToClientAsync(message, cancellationToken);
            sent++;
        }

        return sent.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }
}

internal sealed record SubjectSend(string Subject, bool Text, byte[] Data);

[System.Text.Json.Serialization.JsonSerializable(typeof(SubjectSend))]
[System.Text.Json.Serialization.JsonSourceGenerationOptions(System.Text.Json.JsonSerializerDefaults.Web)]
internal sealed partial class UsersJson : System.Text.Json.Serialization.JsonSerializerContext;
