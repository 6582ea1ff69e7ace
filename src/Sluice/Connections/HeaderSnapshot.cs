using System.Collections;
using System.Diagnostics.CodeAnalysis;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Primitives;
using Microsoft.Net.Http.Headers;

namespace Sluice;

/// <summary>
/// A read-only copy of an upgrade request's headers, for a connection that leaves its request early
/// (<see cref="UpgradeHandoff"/>): one array of the request's names and values, looked up by a scan (a handshake has a
/// handful of headers). A <see cref="HeaderDictionary"/> copy costs about twice as much, and every idle connection
/// holds its copy for its whole life.
/// </summary>
internal sealed class HeaderSnapshot : IHeaderDictionary
{
    // Values every handshake repeats: the copy shares one string for each rather than keeping the request's own.
    private static readonly string[] s_commonValues = ["websocket", "Upgrade", "13"];

    private readonly KeyValuePair<string, StringValues>[] _headers;

    public HeaderSnapshot(IHeaderDictionary headers)
    {
        _headers = new KeyValuePair<string, StringValues>[headers.Count];
        var count = 0;
        foreach (var header in headers)
        {
            if (count == _headers.Length)
            {
                // Count and enumeration disagree only for a collection that changed while copied; keep what fits.
                break;
            }

            _headers[count++] = new(header.Key, Shared(header.Value));
        }

        if (count < _headers.Length)
        {
            Array.Resize(ref _headers, count);
        }
    }

    public StringValues this[string key]
    {
        get => TryGetValue(key, out var value) ? value : StringValues.Empty;
        set => throw ReadOnly();
    }

    StringValues IDictionary<string, StringValues>.this[string key]
    {
        get => TryGetValue(key, out var value) ? value : throw new KeyNotFoundException($"The request had no '{key}' header.");
        set => throw ReadOnly();
    }

    public long? ContentLength
    {
        get => TryGetValue(HeaderNames.ContentLength, out var value) && HeaderUtilities.TryParseNonNegativeInt64(value.ToString(), out var length) ? length : null;
        set => throw ReadOnly();
    }

    public int Count => _headers.Length;

    public bool IsReadOnly => true;

    public ICollection<string> Keys => Array.ConvertAll(_headers, static header => header.Key);

    public ICollection<StringValues> Values => Array.ConvertAll(_headers, static header => header.Value);

    public bool TryGetValue(string key, [MaybeNullWhen(false)] out StringValues value)
    {
        foreach (var header in _headers)
        {
            if (string.Equals(header.Key, key, StringComparison.OrdinalIgnoreCase))
            {
                value = header.Value;
                return true;
            }
        }

        value = default;
        return false;
    }

    public bool ContainsKey(string key) => TryGetValue(key, out _);

    public bool Contains(KeyValuePair<string, StringValues> item) =>
        TryGetValue(item.Key, out var value) && StringValues.Equals(value, item.Value);

    public void CopyTo(KeyValuePair<string, StringValues>[] array, int arrayIndex) => _headers.CopyTo(array, arrayIndex);

    public IEnumerator<KeyValuePair<string, StringValues>> GetEnumerator() => ((IEnumerable<KeyValuePair<string, StringValues>>)_headers).GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    public void Add(string key, StringValues value) => throw ReadOnly();

    public void Add(KeyValuePair<string, StringValues> item) => throw ReadOnly();

    public bool Remove(string key) => throw ReadOnly();

    public bool Remove(KeyValuePair<string, StringValues> item) => throw ReadOnly();

    public void Clear() => throw ReadOnly();

    private static StringValues Shared(StringValues value)
    {
        if (value.Count == 1 && value[0] is { } text)
        {
            foreach (var common in s_commonValues)
            {
                if (string.Equals(text, common, StringComparison.Ordinal))
                {
                    return common;
                }
            }
        }

        return value;
    }

    private static NotSupportedException ReadOnly() => new("The headers of a connection's upgrade request are read-only.");
}
