// ClickHouse's official JDBC driver as a client of the local ClickHouse front, for
// tests/integration/test_clickhouse_clients.py. Run as a single-file program on Java 17:
//
//   JDBC_PASSWORD=... java -cp 'LIBS/*' ClickHouseJdbc.java query JDBC_URL USER SQL
//       prints the driver's name and version, the column labels, then each row, tab-separated
//       (the password comes from the environment, so that it is not on a command line)
//   java -cp 'LIBS/*' ClickHouseJdbc.java cityhash HEX...
//       prints the driver's CityHash128 of each input (hex) as the 16 bytes a compressed block
//       starts with (each 64-bit half little-endian, as the driver reads them), in hex

import com.clickhouse.data.ClickHouseCityHash;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.Statement;
import java.util.HexFormat;
import java.util.Properties;

public class ClickHouseJdbc {
    public static void main(String[] args) throws Exception {
        switch (args.length > 0 ? args[0] : "") {
            case "query" -> query(args[1], args[2], System.getenv("JDBC_PASSWORD"), args[3]);
            case "cityhash" -> {
                for (int i = 1; i < args.length; i++) {
                    System.out.println(checksum(HexFormat.of().parseHex(args[i])));
                }
            }
            default -> {
                System.err.println("usage: ClickHouseJdbc query URL USER SQL (JDBC_PASSWORD in the environment) | cityhash HEX...");
                System.exit(2);
            }
        }
    }

    static void query(String url, String user, String password, String sql) throws Exception {
        Properties props = new Properties();
        props.setProperty("user", user);
        props.setProperty("password", password);
        try (Connection conn = DriverManager.getConnection(url, props);
             Statement stmt = conn.createStatement();
             ResultSet rs = stmt.executeQuery(sql)) {
            DatabaseMetaData meta = conn.getMetaData();
            System.out.println("driver\t" + meta.getDriverName() + "\t" + meta.getDriverVersion());
            ResultSetMetaData columns = rs.getMetaData();
            StringBuilder line = new StringBuilder("columns");
            for (int i = 1; i <= columns.getColumnCount(); i++) {
                line.append('\t').append(columns.getColumnLabel(i));
            }
            System.out.println(line);
            while (rs.next()) {
                line = new StringBuilder("row");
                for (int i = 1; i <= columns.getColumnCount(); i++) {
                    line.append('\t').append(rs.getString(i));
                }
                System.out.println(line);
            }
        }
    }

    @SuppressWarnings("deprecation")  // the v1 utility class; the driver still checks blocks with it
    static String checksum(byte[] data) {
        long[] hash = ClickHouseCityHash.cityHash128(data, 0, data.length);
        byte[] out = new byte[16];
        for (int half = 0; half < 2; half++) {
            for (int i = 0; i < 8; i++) {
                out[half * 8 + i] = (byte) (hash[half] >>> (8 * i));
            }
        }
        return HexFormat.of().formatHex(out);
    }
}
