package prescore.delta;

import io.delta.storage.HadoopFileSystemLogStore;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.Iterator;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.FSDataOutputStreamBuilder;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.s3a.AWSServiceIOException;
import org.apache.hadoop.fs.s3a.RemoteFileChangedException;

/**
 * Delta commits on S3 from any number of drivers, with no lock service: each commit file is
 * created with S3's conditional put (If-None-Match: *), so of two drivers writing the same
 * version one gets "precondition failed", which Delta treats as a concurrent commit (it checks
 * for conflicts, then retries or fails). Delta's own S3SingleDriverLogStore guards one JVM only.
 *
 * <p>Needs a store that honours conditional puts (AWS S3 since 2024, MinIO, moto) and hadoop-aws
 * 3.4.2 or later. Enabled by prescore.platform.spark for s3a:// paths.
 */
public class ConditionalPutLogStore extends HadoopFileSystemLogStore {
  private static final String CONDITIONAL_PUT = "fs.option.create.conditional.overwrite";
  private static final int CONDITIONAL_WRITE_IN_FLIGHT = 409; // another one to this key

  public ConditionalPutLogStore(Configuration hadoopConf) {
    super(hadoopConf);
  }

  @Override
  public void write(Path path, Iterator<String> actions, Boolean overwrite, Configuration conf)
      throws IOException {
    byte[] commit = contents(actions); // whole before any byte is sent
    FileSystem fs = path.getFileSystem(conf);
    FSDataOutputStreamBuilder<?, ?> builder = fs.createFile(path).overwrite(overwrite);
    if (!overwrite) {
      builder.must(CONDITIONAL_PUT, true);
    }
    try {
      FSDataOutputStream out = builder.build();
      try {
        out.write(commit);
      } catch (Throwable failed) {
        out.abort(); // S3A uploads on close: a failed write must never publish a partial file
        throw failed;
      }
      out.close();
    } catch (RemoteFileChangedException | org.apache.hadoop.fs.FileAlreadyExistsException e) {
      if (!overwrite && sameContents(fs, path, commit)) {
        return; // this very commit, landed by an attempt whose answer was lost, then retried
      }
      throw taken(path, e);
    } catch (AWSServiceIOException e) {
      if (e.statusCode() != CONDITIONAL_WRITE_IN_FLIGHT) {
        throw e;
      }
      throw taken(path, e);
    }
  }

  @Override
  public Boolean isPartialWriteVisible(Path path, Configuration conf) {
    return false; // an object appears whole when its upload completes, or not at all
  }

  private static byte[] contents(Iterator<String> actions) throws IOException {
    ByteArrayOutputStream buffer = new ByteArrayOutputStream();
    while (actions.hasNext()) {
      buffer.write((actions.next() + "\n").getBytes(StandardCharsets.UTF_8));
    }
    return buffer.toByteArray();
  }

  private static boolean sameContents(FileSystem fs, Path path, byte[] commit) throws IOException {
    try (InputStream in = fs.open(path)) {
      return Arrays.equals(in.readAllBytes(), commit);
    } catch (java.io.FileNotFoundException gone) {
      return false;
    }
  }

  /** What Delta expects when a commit file exists: a concurrent writer took this version. */
  private static java.nio.file.FileAlreadyExistsException taken(Path path, Exception cause) {
    java.nio.file.FileAlreadyExistsException taken =
        new java.nio.file.FileAlreadyExistsException(path.toString());
    taken.initCause(cause);
    return taken;
  }
}
