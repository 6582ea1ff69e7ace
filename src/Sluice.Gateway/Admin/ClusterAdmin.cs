using System.Net.WebSockets;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Sluice.Gateway.Admin;

/// <summary>
/// The admin API across nodes: what each node answers for its own connections (list, send, close, the dashboard's
/// snapshot), and the gathering of those answers through <see cref="IWebSocketCluster"/>. Without a backplane the
/// cluster is this node, and the answers are this node's, as before, with <c>node</c> in each entry.
/// </summary>
/// <remarks>
/// Send and close go to every node rather than to the one holding the connection: a connection id names no node, and
/// asking all costs one publish. A node that does not answer in time is named as missing, never silently left out.
/// </remarks>
internal sealed class ClusterAdmin
{
    private const string ListOperation = "gateway.connections.list";
    private const string SendOperation = "gateway.connections.send";
    private const string CloseOperation = "gateway.connections.close";
    private const string SnapshotOperation = "gateway.snapshot";
    private static readonly JsonSerializerOptions s_json = new(JsonSerializerDefaults.Web);

    private readonly IWebSocketCluster _cluster;
    private readonly IWebSocketConnectionRegistry _registry;

    public ClusterAdmin(IWebSocketCluster cluster, IWebSocketConnectionRegistry registry, DashboardSnapshots snapshots)
    {
        _cluster = cluster;
        _registry = registry;
        cluster.MapRequest(ListOperation, (payload, _) =>
        {
            var filter = JsonSerializer.Deserialize<ListRequest>(payload, s_json)!;
            var list = registry.List(filter.Route, filter.Subject).Select(c => AdminEndpoints.Describe(c, cluster.NodeId));
            return ValueTask.FromResult(JsonSerializer.Serialize(list, s_json));
        });
        cluster.MapRequest(SendOperation, SendLocallyAsync);
        cluster.MapRequest(CloseOperation, (payload, cancellationToken) =>
        {
            var request = JsonSerializer.Deserialize<CloseRequest>(payload, s_json)!;
            if (!registry.TryGet(request.Id, out var connection))
            {
                return ValueTask.FromResult(Outcome(StatusCodes.Status404NotFound));
            }

            _ = connection.CloseAsync((WebSocketCloseStatus)request.Code, request.Reason);
            return ValueTask.FromResult(Outcome(StatusCodes.Status202Accepted));
        });
        cluster.MapRequest(SnapshotOperation, (payload, _) =>
            ValueTask.FromResult(payload == cluster.NodeId ? JsonSerializer.Serialize(snapshots.Create(0).Snapshot, s_json) : string.Empty));
    }

    public string NodeId => _cluster.NodeId;

    /// <summary>The connections of every node, oldest first; a partial list names the nodes missing from it in headers.</summary>
    public async Task<IResult> ListAsync(HttpContext context, string? route, string? subject, string? node)
    {
        var replies = await _cluster.RequestAsync(ListOperation, JsonSerializer.Serialize(new ListRequest(route, subject), s_json), context.RequestAborted);
        var all = replies.Replies
            .Where(r => node is null || r.Key == node)
            .SelectMany(r => JsonNode.Parse(r.Value)!.AsArray())
            .OrderBy(c => c!["connectedAt"]!.GetValue<DateTimeOffset>())
            .ToList();
        MarkPartial(context, replies);
        return Results.Json(all, s_json);
    }

    public async Task<IResult> SendAsync(HttpContext context, string id, string to, string text)
    {
        var replies = await _cluster.RequestAsync(SendOperation, JsonSerializer.Serialize(new SendRequest(id, to, text), s_json), context.RequestAborted);
        return Answer(context, id, replies);
    }

    public async Task<IResult> CloseAsync(HttpContext context, string id, int code, string reason)
    {
        var replies = await _cluster.RequestAsync(CloseOperation, JsonSerializer.Serialize(new CloseRequest(id, code, reason), s_json), context.RequestAborted);
        return Answer(context, id, replies);
    }

    public async Task<IResult> NodesAsync(CancellationToken cancellationToken)
    {
        var nodes = await _cluster.GetNodesAsync(cancellationToken);
        return Results.Json(new
        {
            node = _cluster.NodeId,
            nodes = nodes.OrderBy(n => n.Id, StringComparer.Ordinal).Select(n => new
            {
                id = n.Id,
                connections = n.Id == _cluster.NodeId ? _registry.Count : n.Connections,
                lastHeartbeat = n.LastHeartbeat,
                self = n.Id == _cluster.NodeId,
            }),
            totals = new { nodes = nodes.Count, connections = nodes.Sum(n => n.Id == _cluster.NodeId ? _registry.Count : n.Connections) },
        }, s_json);
    }

    /// <summary>Another node's dashboard snapshot, for the dashboard's node picker.</summary>
    public async Task<IResult> SnapshotAsync(HttpContext context, string node)
    {
        var replies = await _cluster.RequestAsync(SnapshotOperation, node, context.RequestAborted);
        if (replies.Replies.TryGetValue(node, out var snapshot) && snapshot.Length > 0)
        {
            return Results.Text(snapshot, "application/json");
        }

        return replies.Missing.Contains(node)
            ? Results.Json(new { error = $"node '{node}' did not answer in time", partial = true, missing = new[] { node } }, s_json, statusCode: StatusCodes.Status504GatewayTimeout)
            : Results.NotFound(new { error = $"no node '{node}' in the cluster" });
    }

    private async ValueTask<string> SendLocallyAsync(string payload, CancellationToken cancellationToken)
    {
        var request = JsonSerializer.Deserialize<SendRequest>(payload, s_json)!;
        if (!_registry.TryGet(request.Id, out var connection))
        {
            return Outcome(StatusCodes.Status404NotFound);
        }

        var message = WebSocketMessage.FromText(request.Text);
        switch (request.To)
        {
            case "backend" when connection is ProxyConnection proxied:
                await proxied.SendToBackendAsync(message, cancellationToken);
                return Outcome(StatusCodes.Status202Accepted);
            case "backend":
                return Outcome(StatusCodes.Status400BadRequest, "the connection is hosted by the gateway, not proxied: there is no backend leg");
            default:
                await connection.SendToClientAsync(message, cancellationToken);
                return Outcome(StatusCodes.Status202Accepted);
        }
    }

    /// <summary>The answer of the node that holds the connection; 404 when none does, 504 when a silent node might.</summary>
    private static IResult Answer(HttpContext context, string id, ClusterReplies replies)
    {
        foreach (var (node, reply) in replies.Replies)
        {
            var outcome = JsonSerializer.Deserialize<NodeOutcome>(reply, s_json)!;
            if (outcome.Status == StatusCodes.Status202Accepted)
            {
                MarkPartial(context, replies);
                return Results.Json(new { id, node }, s_json, statusCode: StatusCodes.Status202Accepted);
            }

            if (outcome.Status != StatusCodes.Status404NotFound)
            {
                return Results.Json(new { error = outcome.Error, node }, s_json, statusCode: outcome.Status);
            }
        }

        if (replies.IsPartial)
        {
            MarkPartial(context, replies);
            return Results.Json(
                new { error = $"no open connection '{id}' on the nodes that answered; no answer in time from {string.Join(", ", replies.Missing)}", partial = true, missing = replies.Missing },
                s_json, statusCode: StatusCodes.Status504GatewayTimeout);
        }

        return Results.NotFound(new { error = $"no open connection '{id}'" });
    }

    private static void MarkPartial(HttpContext context, ClusterReplies replies)
    {
        if (replies.IsPartial)
        {
            context.Response.Headers["Sluice-Partial"] = "true";
            context.Response.Headers["Sluice-Missing-Nodes"] = string.Join(",", replies.Missing);
        }
    }

    private static string Outcome(int status, string? error = null) => JsonSerializer.Serialize(new NodeOutcome(status, error), s_json);

    private sealed record ListRequest(string? Route, string? Subject);

    private sealed record SendRequest(string Id, string To, string Text);

    private sealed record CloseRequest(string Id, int Code, string Reason);

    private sealed record NodeOutcome(int Status, string? Error);
}
