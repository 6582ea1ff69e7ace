using Microsoft.AspNetCore.Http;

namespace Sluice;

/// <summary>
/// The HTTP upgrade request of a WebSocket connection, as the upgrade steps see it before any WebSocket
/// exists. Steps run in order; each may reject the request or pass data on to the next step and, through
/// <see cref="WebSocketConnection.UpgradeData"/>, to the connection (an authentication step passing on the
/// user it found).
/// </summary>
public sealed class UpgradeContext
{
    private Dictionary<object, object?>? _items;
    private string? _connectionId;
    private List<IDisposable>? _disposables;

    /// <summary>
    /// Creates the context of an upgrade request. Sluice creates one per upgrade; create one yourself to run upgrade
    /// policies again on a request (the gateway re-checks open connections when their policies change) or in tests.
    /// </summary>
    /// <param name="httpContext">The upgrade request.</param>
    /// <param name="routePattern">The route pattern of the endpoint.</param>
    public UpgradeContext(HttpContext httpContext, string routePattern)
    {
        ArgumentNullException.ThrowIfNull(httpContext);
        ArgumentNullException.ThrowIfNull(routePattern);
        HttpContext = httpContext;
        RoutePattern = routePattern;
    }

    /// <summary>Gets the upgrade request.</summary>
    public HttpContext HttpContext { get; }

    /// <summary>Gets the route pattern of the endpoint.</summary>
    public string RoutePattern { get; }

    /// <summary>Gets or sets the value the previous step passed on; it becomes <see cref="WebSocketConnection.UpgradeData"/>.</summary>
    public object? Data { get; set; }

    /// <summary>
    /// Gets or sets who the client is, for <see cref="WebSocketConnection.Subject"/>, rate limits and the
    /// <c>X-Sluice-Subject</c> header sent to a backend.
    /// </summary>
    public string? Subject { get; set; }

    /// <summary>Gets values for the connection: they become its <see cref="WebSocketConnection.Items"/>.</summary>
    public IDictionary<object, object?> Items => _items ??= [];

    internal Dictionary<object, object?>? ItemsOrNull => _items;

    /// <summary>
    /// Disposes <paramref name="disposable"/> when the connection ends, or when the upgrade fails after this call (a
    /// later step refused it, the backend failed): what an upgrade step holds for the connection's life, such as a
    /// place under a limit, is given back exactly once.
    /// </summary>
    /// <remarks>
    /// Use this rather than <c>HttpContext.Response.RegisterForDispose</c>: the upgrade request may end before the
    /// connection does (<see cref="Microsoft.AspNetCore.Hosting.SluiceConnectionBuilderExtensions.UseWebSocketHandoff{TBuilder}"/>).
    /// </remarks>
    public void RegisterForDispose(IDisposable disposable)
    {
        ArgumentNullException.ThrowIfNull(disposable);
        (_disposables ??= []).Add(disposable);
    }

    /// <summary>Hands what was registered for disposal to the connection, which disposes it when it ends.</summary>
    internal List<IDisposable>? TakeDisposables()
    {
        var taken = _disposables;
        _disposables = null;
        return taken;
    }

    /// <summary>
    /// The upgrade failed before a connection took over: disposes what was registered, each even if another throws
    /// (the first exception is rethrown after the others, as the request's own disposal did).
    /// </summary>
    internal void DisposeRegistered()
    {
        if (TakeDisposables() is not { } disposables)
        {
            return;
        }

        List<Exception>? errors = null;
        foreach (var disposable in disposables)
        {
            try
            {
                disposable.Dispose();
            }
            catch (Exception ex)
            {
                (errors ??= []).Add(ex);
            }
        }

        if (errors is not null)
        {
            throw errors.Count == 1 ? errors[0] : new AggregateException(errors);
        }
    }

    /// <summary>
    /// The id the connection will have: made when first asked for, so that a proxy's target can name the connection
    /// (<c>${connection.id}</c>) before it exists.
    /// </summary>
    internal string ConnectionId => _connectionId ??= ConnectionIds.Next();

    /// <summary>
    /// Set when a connection took over the connection place the upgrade holds (it gives the place back when it ends);
    /// until then the endpoint gives it back, however the upgrade fails.
    /// </summary>
    internal bool ConnectionOwnsPlace { get; set; }

    /// <summary>Set when the connection reads the socket itself after the 101 and the request may end early.</summary>
    internal UpgradeHandoff? Handoff { get; set; }
}

/// <summary>What an upgrade step decided: go on (maybe with data for the next step) or reject the request.</summary>
public readonly struct UpgradeResult
{
    private UpgradeResult(bool rejected, int statusCode, string? message, object? data, bool hasData)
    {
        IsRejected = rejected;
        StatusCode = statusCode;
        Message = message;
        Data = data;
        HasData = hasData;
    }

    /// <summary>Gets whether the step rejected the upgrade.</summary>
    public bool IsRejected { get; }

    /// <summary>Gets the HTTP status of a rejection.</summary>
    public int StatusCode { get; }

    /// <summary>Gets the plain-text body of a rejection.</summary>
    public string? Message { get; }

    /// <summary>Gets the data passed to the next step, when <see cref="HasData"/> is true.</summary>
    public object? Data { get; }

    /// <summary>Gets whether the step passed data on; otherwise the previous data stays.</summary>
    public bool HasData { get; }

    /// <summary>Goes on to the next step, keeping the current <see cref="UpgradeContext.Data"/>.</summary>
    public static UpgradeResult Continue() => default;

    /// <summary>Goes on to the next step with <paramref name="data"/> as <see cref="UpgradeContext.Data"/>.</summary>
    public static UpgradeResult Continue(object? data) => new(false, 0, null, data, hasData: true);

    /// <summary>
    /// Rejects the upgrade: the client gets <paramref name="statusCode"/> with <paramref name="message"/> as a
    /// plain-text body, and no WebSocket is created. Later steps do not run.
    /// </summary>
    public static UpgradeResult Reject(int statusCode, string? message = null)
    {
        if (statusCode is < 400 or > 599)
        {
            throw new ArgumentOutOfRangeException(nameof(statusCode), statusCode, "A rejection is a 4xx or 5xx status.");
        }

        return new UpgradeResult(true, statusCode, message, null, hasData: false);
    }
}
